//! The invariants of design.md, checked over a run's recorded history.
//!
//! 1. Every write answered 2xx is stored at the end, unless the plan destroyed Redis data
//!    (then the loss is counted and reported, not hidden).
//! 2. Every dashboard sees each event of its sessions exactly once, in `seq` order: after a
//!    confirmation, events continue at the confirmed cursor + 1 with no gap, duplicate or
//!    reordering; `recovered: false` moves the cursor (the client reloads). At the end each
//!    dashboard has caught up with the stored sequence.
//! 3. Every command is claimed by at most one poll.
//! 4. No request goes unanswered past its bound, and the simulation neither panics nor runs
//!    over its time.
//! 5. Liveness: after the last fault healed, every instance takes a write again.
//! 6. TTL, with afw's real TTLs reached by clock jumps: just under 24 h after its last
//!    activity a session is whole (as the final read saw it); a write then refreshes all of
//!    it, events included; past 24 h of idleness it is gone entirely (session, events and
//!    chains together). Queues outlive 5 idle minutes minus a little, not 5 minutes plus a
//!    little, and their session stays.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::scenario::{Record, Run, TtlPhase};

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

/// A digest of everything the clients saw: equal for equal runs.
pub fn digest(run: &Run) -> String {
    let mut h = DefaultHasher::new();
    for (at, r) in &run.history.records {
        at.hash(&mut h);
        format!("{r:?}").hash(&mut h);
    }
    format!("{:016x}", h.finish())
}
