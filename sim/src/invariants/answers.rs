//! 4. Every answer is one the API allows; a request served while Redis is unreachable
//!    answers 503; no false 404.

use std::collections::BTreeMap;

use super::{Report, violation};
use crate::plan::FaultKind;
use crate::record::Record;
use crate::world::Run;

/// 4, answers: every answer is one the API allows for the request; while Redis is
/// unreachable from an instance (Redis down, or that instance partitioned from it), a
/// request it serves from start to end answers 503, never 2xx or 404; and a 404 never
/// denies a session that has an acknowledged write (unless the plan wiped Redis first).
pub(super) fn check_answers(run: &Run, report: &mut Report) {
    let plan = &run.plan;
    let outages: Vec<(Vec<usize>, u64, u64)> = plan
        .faults
        .iter()
        .filter_map(|f| {
            let cut = f.kind.cuts_off(plan.instances)?;
            Some((cut, f.at_ms, f.at_ms + f.heal_after_ms))
        })
        .collect();
    let wiped_before = |t: u64| {
        plan.faults
            .iter()
            .any(|f| f.kind == FaultKind::RedisCrashLoseData && f.at_ms <= t)
    };
    let mut first_ack: BTreeMap<&str, u64> = BTreeMap::new();
    for (at, r) in &run.history.records {
        if let Record::Post {
            session,
            status: 200 | 201,
            ..
        } = r
        {
            first_ack.entry(session.as_str()).or_insert(*at);
        }
    }
    for (ended, r) in &run.history.records {
        let Some(Answer {
            what,
            session,
            instance,
            started,
            status,
            allowed,
        }) = answer(r)
        else {
            continue;
        };
        if *status == 0 {
            continue;
        }
        report.checks += 1;
        let at = format!("{what} of {session} on instance {instance} from {started} to {ended} ms");
        if !allowed.contains(status) {
            violation(
                report,
                "4 503 while Redis is unreachable",
                format!("{at}: answered {status}, allowed {allowed:?}"),
            );
        } else if *status != 503
            && outages
                .iter()
                .any(|(cut, from, to)| cut.contains(instance) && started >= from && ended <= to)
        {
            violation(
                report,
                "4 503 while Redis is unreachable",
                format!("{at}: answered {status} while Redis was unreachable from it"),
            );
        } else if *status == 404
            && first_ack.get(session).is_some_and(|t| t < started)
            && !wiped_before(*started)
        {
            violation(
                report,
                "4 503 while Redis is unreachable",
                format!("{at}: a false 404 for a session with acknowledged writes"),
            );
        }
    }
}

/// One answered request: what it was, for which session, served by which instance when,
/// its status and the statuses the API allows for it.
struct Answer<'a> {
    what: &'a str,
    session: &'a str,
    instance: &'a usize,
    started: &'a u64,
    status: &'a u16,
    allowed: &'static [u16],
}

fn answer(r: &Record) -> Option<Answer<'_>> {
    Some(match r {
        Record::Post {
            session,
            instance,
            started,
            status,
            ..
        } => Answer {
            what: "POST event",
            session,
            instance,
            started,
            status,
            allowed: &[200, 201, 503],
        },
        Record::Read {
            session,
            what,
            instance,
            started,
            status,
        } => Answer {
            what,
            session,
            instance,
            started,
            status,
            allowed: &[200, 404, 503],
        },
        Record::InputQueued {
            session,
            instance,
            started,
            status,
            ..
        } => Answer {
            what: "POST input",
            session,
            instance,
            started,
            status,
            allowed: &[201, 404, 429, 503],
        },
        Record::InputPolled {
            session,
            instance,
            started,
            status,
            ..
        } => Answer {
            what: "GET input",
            session,
            instance,
            started,
            status,
            allowed: &[200, 404, 503],
        },
        Record::Updated {
            session,
            instance,
            started,
            status,
            ..
        } => Answer {
            what: "PUT session",
            session,
            instance,
            started,
            status,
            allowed: &[200, 404, 503],
        },
        Record::CommandQueued {
            session,
            instance,
            started,
            status,
            ..
        } => Answer {
            what: "POST command",
            session,
            instance,
            started,
            status,
            allowed: &[201, 404, 429, 503],
        },
        Record::Claimed {
            session,
            instance,
            started,
            status,
            ..
        } => Answer {
            what: "GET commands",
            session,
            instance,
            started,
            status,
            allowed: &[200, 404, 503],
        },
        _ => return None,
    })
}
