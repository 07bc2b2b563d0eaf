//! 7. What afw derives matches the reference model ([`crate::model`]): replaying a
//!    session's stored events in `seq` order predicts its status, end, conversation
//!    state, counters, current chain, and each chain's status and step statuses, and the
//!    final read agrees. Also: the stored list has unique, contiguous seqs, and each
//!    acknowledged `seq` holds the acknowledged event (unless the plan wiped Redis), and
//!    session pages read during the run match the model over the events they count.

use std::collections::{BTreeMap, BTreeSet};

use afw::domain::model::Timestamp;

use super::{Finals, Report, violation};
use crate::model;
use crate::record::Record;
use crate::world::Run;

pub(super) fn check(run: &Run, records: &[&Record], finals: &Finals<'_>, report: &mut Report) {
    let popped: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| match r {
            Record::InputPolled {
                session,
                item: Some(_),
                ..
            } => Some(session.as_str()),
            _ => None,
        })
        .collect();
    for r in records {
        if let Record::Derived {
            session,
            events,
            read,
        } = r
        {
            report.checks += 1;
            let predicted = model::replay(events);
            let wrong =
                model::differences(&predicted, read, popped.contains(session.as_str()), |ms| {
                    Timestamp(ms).to_rfc3339()
                });
            if !wrong.is_empty() {
                violation(
                    report,
                    "7 derived state",
                    format!("{session}: {}", wrong.join("; ")),
                );
            }
        }
    }
    contiguous(finals, report);
    if !run.plan.destroys_data() {
        acknowledged_where_stored(records, finals, report);
        views_during_the_run(records, report);
        last_update_wins(run, report);
    }
}

/// A session's metadata at the end is what its last acknowledged `PUT` set, or what a
/// later unanswered one (503, no answer) may have set: an event stored meanwhile by any
/// instance never undoes an update, nor an update an event (both rewrite the session).
fn last_update_wins(run: &Run, report: &mut Report) {
    let records = &run.history.records;
    for (_, r) in records {
        let Record::Derived { session, read, .. } = r else {
            continue;
        };
        // The last acknowledged update (when it was sent, what it set), and the unanswered
        // ones with until when each may still land.
        let mut last: Option<(u64, &str)> = None;
        let mut unanswered: Vec<(u64, &str)> = Vec::new();
        for (at, u) in records {
            let Record::Updated {
                session: s,
                note,
                instance,
                started,
                status,
            } = u
            else {
                continue;
            };
            if s != session {
                continue;
            }
            match status {
                200 => last = Some((*started, note.as_str())),
                0 | 503 => unanswered.push((
                    super::queues::lands_until(run, *instance, *started, *at),
                    note.as_str(),
                )),
                _ => {}
            }
        }
        let since = last.map_or(0, |(started, _)| started);
        let mut expected: Vec<Option<&str>> = vec![last.map(|(_, note)| note)];
        expected.extend(
            unanswered
                .iter()
                .filter(|(until, _)| *until >= since)
                .map(|(_, note)| Some(*note)),
        );
        report.checks += 1;
        let got = read["metadata"]["note"].as_str();
        if !expected.contains(&got) {
            violation(
                report,
                "7 derived state",
                format!(
                    "{session}: metadata note {got:?} at the end, expected one of {expected:?}"
                ),
            );
        }
    }
}

/// A session page read during the run shows the state after the events it counts: the
/// model replayed over the first `eventCount` stored events predicts it (conversation
/// state aside: input pops set it at moments the events do not tell). Only when Redis kept
/// its data, so the stored list the final read saw is the one every view was built on.
fn views_during_the_run(records: &[&Record], report: &mut Report) {
    let stored: BTreeMap<&str, &Vec<serde_json::Value>> = records
        .iter()
        .filter_map(|r| match r {
            Record::Derived {
                session, events, ..
            } => Some((session.as_str(), events)),
            _ => None,
        })
        .collect();
    for r in records {
        let Record::Viewed { session, read } = r else {
            continue;
        };
        let Some(events) = stored.get(session.as_str()) else {
            continue;
        };
        let counted = read["eventCount"].as_u64().unwrap_or(0) as usize;
        report.checks += 1;
        if counted > events.len() {
            violation(
                report,
                "7 derived state",
                format!(
                    "{session}: a view during the run counted {counted} events, more than the {} stored",
                    events.len()
                ),
            );
            continue;
        }
        let predicted = model::replay(&events[..counted]);
        let wrong = model::differences(&predicted, read, true, |ms| Timestamp(ms).to_rfc3339());
        if !wrong.is_empty() {
            violation(
                report,
                "7 derived state",
                format!(
                    "{session}: a view after {counted} events: {}",
                    wrong.join("; ")
                ),
            );
        }
    }
}

/// The stored list of every session has unique, contiguous seqs.
fn contiguous(finals: &Finals<'_>, report: &mut Report) {
    for (session, (events, _)) in finals {
        report.checks += 1;
        let seqs: Vec<u64> = events.iter().map(|(seq, _)| *seq).collect();
        if seqs.windows(2).any(|w| w[1] != w[0] + 1) {
            violation(
                report,
                "7 stored seqs",
                format!("{session}: stored seqs are not contiguous: {seqs:?}"),
            );
        }
    }
}

/// Each acknowledged `(n, seq)` is stored at that `seq`, and what a dashboard saw at a
/// `seq` is what is stored there.
fn acknowledged_where_stored(records: &[&Record], finals: &Finals<'_>, report: &mut Report) {
    let stored: BTreeMap<(&str, u64), Option<u64>> = finals
        .iter()
        .flat_map(|(session, (events, _))| {
            events.iter().map(move |(seq, n)| ((*session, *seq), *n))
        })
        .collect();
    for r in records {
        let (what, session, seq, n) = match r {
            Record::Post {
                session,
                n,
                status: 200 | 201,
                seq: Some(seq),
                ..
            } => ("acknowledged", session, *seq, Some(*n)),
            Record::Event {
                session, seq, n, ..
            } => ("delivered", session, *seq, *n),
            _ => continue,
        };
        // Writes after the final read (the TTL phase's) are not in it.
        let Some((_, last_seq)) = finals.get(session.as_str()) else {
            continue;
        };
        if seq > *last_seq {
            continue;
        }
        report.checks += 1;
        match stored.get(&(session.as_str(), seq)) {
            Some(at) if *at == n => {}
            Some(at) => violation(
                report,
                "7 event identity",
                format!("{session}: event {n:?} {what} at seq {seq}, but seq {seq} holds {at:?}"),
            ),
            None => violation(
                report,
                "7 event identity",
                format!("{session}: event {n:?} {what} at seq {seq}, which is not stored"),
            ),
        }
    }
}
