//! The invariants of design.md, checked over a run's recorded history.
//!
//! 1. Every write answered 2xx is stored at the end, unless the plan destroyed Redis data
//!    (then the loss is counted and reported, not hidden).
//! 2. Every dashboard sees each event of its sessions exactly once, in `seq` order: after a
//!    confirmation, events continue at the confirmed cursor + 1 with no gap, duplicate or
//!    reordering; `recovered: false` moves the cursor (the client reloads). At the end each
//!    dashboard has caught up with the stored sequence.
//! 3. Every command is claimed by at most one poll. Every input item is popped at most
//!    once, every acknowledged item is popped (unless lost by plan or possibly taken by an
//!    unanswered poll), and no poll answers "empty" while an item queued before its
//!    deadline waits.
//! 4. No request goes unanswered past its bound, and the simulation neither panics nor runs
//!    over its time. Every answer is one the API allows; a request served entirely while
//!    Redis is unreachable from its instance answers 503 (not 2xx, not 404); no false 404
//!    for a session with acknowledged writes.
//! 5. Liveness: after the last fault healed, every instance takes a write again.
//! 6. TTL, with afw's real TTLs reached by clock jumps: just under 24 h after its last
//!    activity a session is whole (as the final read saw it); a write then refreshes all of
//!    it, events included; past 24 h of idleness it is gone entirely (session, events and
//!    chains together). Queues outlive 5 idle minutes minus a little, not 5 minutes plus a
//!    little, and their session stays.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use afw::hash::Fnv1a;

use crate::plan::FaultKind;
use crate::record::{Record, TtlPhase};
use crate::world::Run;

/// A session's stored events as the final read saw them: `(seq, n)`.
type StoredEvents = Vec<(u64, Option<u64>)>;

#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub violations: Vec<Violation>,
    /// Acknowledged events missing at the end because the plan wiped Redis.
    pub lost_by_plan: usize,
    /// Acknowledged input items never seen popped, when a later poll of their session
    /// failed (503 or no answer) and may have popped them (see `check_input`).
    pub input_in_doubt: usize,
    pub checks: usize,
}

fn violation(report: &mut Report, invariant: &'static str, detail: String) {
    if report.violations.len() < 50 {
        report.violations.push(Violation { invariant, detail });
    }
}

pub fn check(run: &Run) -> Report {
    let mut report = Report::default();
    let records: Vec<&Record> = run.history.records.iter().map(|(_, r)| r).collect();

    if let Some(e) = &run.sim_error {
        violation(
            &mut report,
            "4 no panic, no hang",
            format!("simulation failed: {e}"),
        );
    }

    // 1. Acknowledged writes are stored.
    let finals: BTreeMap<&str, (&StoredEvents, u64)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Final {
                session,
                events,
                last_seq,
            } => Some((session.as_str(), (events, *last_seq))),
            _ => None,
        })
        .collect();
    let mut acked: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for r in &records {
        if let Record::Post {
            session,
            n,
            status: 201,
            ..
        } = r
        {
            acked.entry(session.as_str()).or_default().insert(*n);
        }
    }
    for (session, ns) in &acked {
        report.checks += 1;
        let Some((events, _)) = finals.get(session) else {
            violation(
                &mut report,
                "1 acknowledged writes survive",
                format!("{session}: final read failed"),
            );
            continue;
        };
        let stored: BTreeSet<u64> = events.iter().filter_map(|(_, n)| *n).collect();
        let missing: Vec<u64> = ns.iter().copied().filter(|n| !stored.contains(n)).collect();
        if missing.is_empty() {
            continue;
        }
        if run.plan.destroys_data() {
            report.lost_by_plan += missing.len();
        } else {
            violation(
                &mut report,
                "1 acknowledged writes survive",
                format!("{session}: acknowledged but not stored: {missing:?}"),
            );
        }
    }

    // 2. Exactly once, in order, per dashboard and session.
    let mut cursor: BTreeMap<(usize, &str), u64> = BTreeMap::new();
    for r in &records {
        match r {
            Record::Subscribed {
                dashboard,
                session,
                after,
                last_seq,
                recovered,
            } => {
                let at = match (after, recovered) {
                    (Some(after), Some(true)) => *after,
                    _ => *last_seq,
                };
                cursor.insert((*dashboard, session.as_str()), at);
            }
            Record::Event {
                dashboard,
                session,
                seq,
                ..
            } => {
                report.checks += 1;
                let key = (*dashboard, session.as_str());
                match cursor.get(&key) {
                    Some(c) if *seq == c + 1 => {
                        cursor.insert(key, *seq);
                    }
                    Some(c) => {
                        violation(
                            &mut report,
                            "2 exactly once, in order",
                            format!("dashboard {dashboard}, {session}: got seq {seq} after {c}"),
                        );
                        cursor.insert(key, *seq);
                    }
                    None => violation(
                        &mut report,
                        "2 exactly once, in order",
                        format!(
                            "dashboard {dashboard}, {session}: event {seq} before any confirmation"
                        ),
                    ),
                }
            }
            _ => {}
        }
    }
    for d in 0..run.plan.dashboards {
        for (session, (_, last_seq)) in &finals {
            report.checks += 1;
            let seen = cursor.get(&(d, *session)).copied().unwrap_or(0);
            if seen < *last_seq {
                violation(
                    &mut report,
                    "2 exactly once, in order",
                    format!("dashboard {d}, {session}: caught up to {seen} of {last_seq}"),
                );
            }
        }
    }

    // 3. Commands are claimed at most once.
    let mut claimed = BTreeSet::new();
    for r in &records {
        if let Record::Claimed { ids, .. } = r {
            for id in ids {
                report.checks += 1;
                if !claimed.insert(id.as_str()) {
                    violation(
                        &mut report,
                        "3 claimed at most once",
                        format!("{id} claimed twice"),
                    );
                }
            }
        }
    }

    check_input(run, &mut report);
    check_answers(run, &mut report);

    // 4 and 5.
    for r in &records {
        match r {
            Record::Hang { client, what } => violation(
                &mut report,
                "4 no panic, no hang",
                format!("{client}: {what}"),
            ),
            Record::Live { instance, ok } => {
                report.checks += 1;
                if !ok {
                    violation(
                        &mut report,
                        "5 liveness",
                        format!("instance {instance} took no write after healing"),
                    );
                }
            }
            Record::TtlRead {
                session,
                phase,
                session_status,
                events,
                chains_status,
            } => {
                report.checks += 1;
                let stored = finals.get(session.as_str()).map(|(e, _)| e.len() as u64);
                let expected = match (phase, stored) {
                    (TtlPhase::AfterTtl, _) => Some((404, 0, 404)),
                    (TtlPhase::BeforeTtl, Some(0)) => None,
                    (TtlPhase::BeforeTtl, Some(n)) => Some((200, n, 200)),
                    (TtlPhase::Refreshed, Some(n)) => Some((200, n + 1, 200)),
                    (_, None) => None,
                };
                if let Some(expected) = expected
                    && (*session_status, *events, *chains_status) != expected
                {
                    violation(
                        &mut report,
                        "6 TTL",
                        format!(
                            "{session} {phase:?}: session {session_status}, {events} events, \
                             chains {chains_status}; expected {expected:?} \
                             (session, events, chains)"
                        ),
                    );
                }
            }
            Record::QueueTtl {
                before_ttl_available,
                after_ttl_available,
                after_ttl_commands,
                session_status,
            } => {
                report.checks += 1;
                let seen = (
                    *before_ttl_available,
                    *after_ttl_available,
                    *after_ttl_commands,
                    *session_status,
                );
                if seen != (true, false, 0, 200) {
                    violation(
                        &mut report,
                        "6 TTL",
                        format!(
                            "queues around their 5 min TTL: (input before, input after, \
                             commands after, session after) = {seen:?}, expected \
                             (true, false, 0, 200)"
                        ),
                    );
                }
            }
            _ => {}
        }
    }
    report
}

/// 3, input: every item is popped at most once; every acknowledged item is popped (unless
/// a crash that lost Redis's data healed after it was queued, or a later poll of its
/// session failed and may have taken it: then the item is "in doubt", counted and
/// reported); and no poll answers "empty" while an item acknowledged before its deadline
/// waits.
///
/// A pop is one step in Redis: when its reply is lost (a partition cuts the link after the
/// pop ran) the poll answers 503 or not at all, and the item is gone with nobody holding
/// it. The hooks' API has no acknowledgement for input that would let afw do better
/// without risking duplicates (docs/decisions.md).
fn check_input(run: &Run, report: &mut Report) {
    let records = &run.history.records;
    let mut popped: BTreeMap<&str, u64> = BTreeMap::new();
    let mut failed_polls: Vec<(&str, u64)> = Vec::new();
    for (ended, r) in records {
        if let Record::InputPolled {
            session,
            started,
            status,
            item,
            ..
        } = r
        {
            if *status == 0 || *status == 503 {
                failed_polls.push((session.as_str(), *ended));
            }
            if let Some(item) = item {
                report.checks += 1;
                if popped.insert(item.as_str(), *started).is_some() {
                    violation(
                        report,
                        "3 queue claim semantics",
                        format!("{session}: input {item} popped twice"),
                    );
                }
            }
        }
    }
    let acked: Vec<(u64, &str, &str)> = records
        .iter()
        .filter_map(|(at, r)| match r {
            Record::InputQueued {
                session,
                item,
                status: 201,
                ..
            } => Some((*at, session.as_str(), item.as_str())),
            _ => None,
        })
        .collect();
    // Redis comes back empty when a crash that loses data heals.
    let wiped_after = |t: u64| {
        run.plan
            .faults
            .iter()
            .any(|f| f.kind == FaultKind::RedisCrashLoseData && f.at_ms + f.heal_after_ms >= t)
    };
    for (queued, session, item) in &acked {
        report.checks += 1;
        if popped.contains_key(item) || wiped_after(*queued) {
            continue;
        }
        if failed_polls
            .iter()
            .any(|(s, ended)| s == session && ended >= queued)
        {
            report.input_in_doubt += 1;
        } else {
            violation(
                report,
                "3 queue claim semantics",
                format!("{session}: input {item} was acknowledged but never popped"),
            );
        }
    }
    for (ended, r) in records {
        let Record::InputPolled {
            session,
            started,
            timeout_ms,
            status: 200,
            item: None,
            ..
        } = r
        else {
            continue;
        };
        report.checks += 1;
        let waiting = acked.iter().find(|(queued, s, item)| {
            s == session
                && *queued < started + timeout_ms
                && popped.get(item).is_some_and(|taken| taken > ended)
        });
        if let Some((queued, _, item)) = waiting {
            violation(
                report,
                "3 queue claim semantics",
                format!(
                    "{session}: the poll sent at {started} ms (timeout {timeout_ms} ms) answered \
                     empty at {ended} ms while {item}, queued at {queued} ms, waited"
                ),
            );
        }
    }
}

/// 4, answers: every answer is one the API allows for the request; while Redis is
/// unreachable from an instance (Redis down, or that instance partitioned from it), a
/// request it serves from start to end answers 503, never 2xx or 404; and a 404 never
/// denies a session that has an acknowledged write (unless the plan wiped Redis first).
fn check_answers(run: &Run, report: &mut Report) {
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
            status: 201,
            ..
        } = r
        {
            first_ack.entry(session.as_str()).or_insert(*at);
        }
    }
    for (ended, r) in &run.history.records {
        let (what, session, instance, started, status, allowed): (&str, &str, _, _, _, &[u16]) =
            match r {
                Record::Post {
                    session,
                    instance,
                    started,
                    status,
                    ..
                } => (
                    "POST event",
                    session,
                    instance,
                    started,
                    status,
                    &[201, 503],
                ),
                Record::Read {
                    session,
                    what,
                    instance,
                    started,
                    status,
                } => (what, session, instance, started, status, &[200, 404, 503]),
                Record::InputQueued {
                    session,
                    instance,
                    started,
                    status,
                    ..
                } => (
                    "POST input",
                    session,
                    instance,
                    started,
                    status,
                    &[201, 404, 429, 503],
                ),
                Record::InputPolled {
                    session,
                    instance,
                    started,
                    status,
                    ..
                } => (
                    "GET input",
                    session,
                    instance,
                    started,
                    status,
                    &[200, 404, 503],
                ),
                _ => continue,
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

/// A digest of everything the clients saw: equal for equal runs.
pub fn digest(run: &Run) -> String {
    let mut h = Fnv1a::default();
    for (at, r) in &run.history.records {
        at.hash(&mut h);
        format!("{r:?}").hash(&mut h);
    }
    format!("{:016x}", h.finish())
}
