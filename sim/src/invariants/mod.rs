//! The invariants of design.md, checked over a run's recorded history.
//!
//! 1. Every write answered 2xx is stored at the end, unless the plan destroyed Redis data
//!    (then the loss is counted and reported, not hidden).
//! 2. Every dashboard sees each event of its sessions exactly once, in `seq` order: after a
//!    confirmation, events continue at the confirmed cursor + 1 with no gap, duplicate or
//!    reordering; `recovered: false` moves the cursor (the client reloads). At the end each
//!    dashboard has caught up with the stored sequence.
//! 3. Every command is claimed by one poll at a time, as its lease says, and every
//!    acknowledged command is claimed (again, after a lease let expire). Every input item is popped at most
//!    once, every acknowledged item is popped (unless lost by plan or possibly taken by an
//!    unanswered poll), and no poll answers "empty" while an item queued before its
//!    deadline waits.
//! 4. No request goes unanswered past its bound, and the simulation neither panics nor runs
//!    over its time. Every answer is one the API allows; a request served entirely while
//!    Redis is unreachable from its instance answers 503 (not 2xx, not 404); no false 404
//!    for a session with acknowledged writes.
//! 5. Liveness: after the last fault healed, every instance takes a write again. In
//!    liveness mode a fault that never heals begins at the end: the instances that still
//!    reach Redis keep serving, the ones cut off answer 503, none hangs.
//! 6. TTL, with afw's real TTLs reached by clock jumps: just under 24 h after its last
//!    activity a session is whole (as the final read saw it); a write then refreshes all of
//!    it, events included; past 24 h of idleness it is gone entirely (session, events and
//!    chains together). Queues outlive 5 idle minutes minus a little, not 5 minutes plus a
//!    little, and their session stays.
//! 7. Derived state: afw's reads of sessions and chains match the reference model
//!    ([`crate::model`]) replayed over the stored events; each seq holds one event.
//! 8. Timeliness: an acknowledged event reaches every subscribed dashboard, and an input
//!    item its long poll, within a bound of its acknowledgement, or of the heal of a fault
//!    that delayed it.
//! 9. Deletes: a session deleted (204) is gone from every instance, chains and listings
//!    included, and its subscribers hear `session:deleted` in time.
//! 10. Metrics: the instances' counters (events stored, duplicates, frames sent) are no
//!     lower than what the clients saw ([`metrics`]).
//! 11. Archival: every hook session is archived once per incarnation, its final snapshot
//!     its last state, with every acknowledged event unless the plan destroyed Redis data
//!     first; past its TTL it is read from the archive ([`archived`]).

//!
//! One module per invariant group: [`durability`] (1), [`delivery`] (2), [`commands`] and [`queues`] (3),
//! [`answers`] (4); hangs, liveness and TTLs (4, 5, 6) are judged per record in
//! [`end_of_run`]; [`derived`] (7) holds afw's derived state to the reference model and
//! each acknowledged or delivered event to its stored seq; [`timely`] (8) asks whether
//! what arrived arrived in time; [`deletes`] (9) that a deleted session stays gone. The
//! checks run in a fixed order, so a report reads the same every time.
//! Nothing here may run the simulation: it reads a finished [`Run`].

mod answers;
mod archived;
mod commands;
mod deletes;
mod delivery;
mod derived;
mod durability;
mod metrics;
mod queues;
mod timely;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use afw::hash::Fnv1a;

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
    /// Acknowledged events in none of their session's snapshots because the plan wiped
    /// Redis before they were archived (see [`archived`]).
    pub archive_lost_by_plan: usize,
    /// Acknowledged input items never seen popped, when a later poll of their session
    /// failed (503 or no answer) and may have popped them (see `check_input`).
    pub input_in_doubt: usize,
    /// Acknowledged commands never claimed (or leased ones never claimed again), when a
    /// later claim of their session failed and may have taken them (see `commands`).
    pub commands_in_doubt: usize,
    /// Reads that found a deleted scratch session back, when one of its writes went
    /// unanswered and may have landed after the delete (see [`deletes`]).
    pub deletes_undone_in_doubt: usize,
    /// Events answered 503 (with a fault about: the reply lost to afw's timeout) and found
    /// stored by the retry (see [`durability`]).
    pub refused_but_stored: usize,
    /// Events whose attempt went unanswered and was found stored by the retry.
    pub stored_unanswered: usize,
    pub checks: usize,
}

fn violation(report: &mut Report, invariant: &'static str, detail: String) {
    if report.violations.len() < 50 {
        report.violations.push(Violation { invariant, detail });
    }
}

/// Each session's final read: its stored events and last `seq`.
type Finals<'a> = BTreeMap<&'a str, (&'a StoredEvents, u64)>;

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
    let finals: Finals<'_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Final {
                session,
                events,
                last_seq,
                ..
            } => Some((session.as_str(), (events, *last_seq))),
            _ => None,
        })
        .collect();
    durability::check(run, &records, &finals, &mut report);
    durability::check_stored_once(&finals, &mut report);
    durability::check_refused_but_stored(run, &run.history.records, &mut report);
    delivery::check(run, &records, &finals, &mut report);
    delivery::check_disconnects(run, &mut report);
    commands::check(run, &mut report);
    queues::check_input(run, &mut report);
    answers::check_answers(run, &mut report);
    derived::check(run, &records, &finals, &mut report);
    timely::check(run, &mut report);
    deletes::check(run, &mut report);
    metrics::check(run, &mut report);
    archived::check(run, &records, &mut report);
    end_of_run(&records, &finals, &mut report);
    nothing_outlives_its_ttl(run, &mut report);
    cut_off_for_good(run, &mut report);
    report
}

/// 5, liveness mode: while a fault that never heals lasts, every instance that still
/// reaches Redis serves (a write 201, a read 200 or 404, a long poll 200) and every
/// instance cut off answers each of them 503; none leaves a request unanswered.
fn cut_off_for_good(run: &Run, report: &mut Report) {
    let Some(forever) = run.plan.forever else {
        return;
    };
    for (_, r) in &run.history.records {
        let Record::Forever {
            instance,
            round,
            what,
            status,
        } = r
        else {
            continue;
        };
        report.checks += 1;
        let cut = forever.cuts_off(*instance);
        let allowed: &[u16] = match (cut, *what) {
            (true, _) => &[503],
            (false, "write") => &[201],
            (false, "read") => &[200, 404],
            (false, _) => &[200],
        };
        if !allowed.contains(status) {
            let side = if cut { "cut off for good" } else { "healthy" };
            violation(
                report,
                "5 liveness",
                format!(
                    "{forever:?}: instance {instance} ({side}) answered {what} with {status} in \
                     round {round}, allowed {allowed:?} (0: no answer)"
                ),
            );
        }
    }
}

/// 6, at the key level: when the run ends every session's TTL passed a day ago, so no key
/// of a hook session is left, and no key at all is left without a TTL (it would leak).
fn nothing_outlives_its_ttl(run: &Run, report: &mut Report) {
    for (key, ttl) in &run.leftover_keys {
        report.checks += 1;
        if ttl.is_none() {
            violation(
                report,
                "6 TTL",
                format!("key {key} has no TTL: it never expires"),
            );
        } else if key.contains("hook-") {
            violation(
                report,
                "6 TTL",
                format!("key {key} outlived its session's TTL"),
            );
        }
    }
}

/// 4 (hangs), 5 (liveness) and 6 (TTLs), judged record by record in the order recorded.
fn end_of_run(records: &[&Record], finals: &Finals<'_>, report: &mut Report) {
    let chain_counts: BTreeMap<&str, usize> = records
        .iter()
        .filter_map(|r| match r {
            Record::Derived { session, read, .. } => Some((
                session.as_str(),
                read["chains"].as_array().map_or(0, Vec::len),
            )),
            _ => None,
        })
        .collect();
    for r in records {
        match r {
            Record::Hang { client, what } => {
                violation(report, "4 no panic, no hang", format!("{client}: {what}"))
            }
            Record::Bridge {
                instance,
                subscribed,
            } => {
                report.checks += 1;
                if !subscribed {
                    violation(
                        report,
                        "5 liveness",
                        format!(
                            "instance {instance}'s Pub/Sub bridge was not subscribed after healing"
                        ),
                    );
                }
            }
            Record::Live { instance, ok } => {
                report.checks += 1;
                if !ok {
                    violation(
                        report,
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
                chains,
                archived,
            } => {
                report.checks += 1;
                let stored = finals.get(session.as_str()).map(|(e, _)| e.len() as u64);
                // The chains the final read saw: they live and expire with their session.
                let derived = chain_counts.get(session.as_str()).copied().unwrap_or(0);
                // Past the TTL the session read answers from the archive (judged by 11):
                // gone from live storage.
                let live = match (phase, *session_status, *archived) {
                    (TtlPhase::AfterTtl, 200, true) => 404,
                    (_, status, _) => status,
                };
                let expected = match (phase, stored) {
                    (TtlPhase::AfterTtl, _) => Some((404, 0, 404, 0)),
                    (TtlPhase::BeforeTtl, Some(0)) => None,
                    (TtlPhase::BeforeTtl, Some(n)) => Some((200, n, 200, derived)),
                    (TtlPhase::Refreshed, Some(n)) => Some((200, n + 1, 200, derived)),
                    (_, None) => None,
                };
                if let Some(expected) = expected
                    && (live, *events, *chains_status, *chains) != expected
                {
                    violation(
                        report,
                        "6 TTL",
                        format!(
                            "{session} {phase:?}: session {session_status} (archived: \
                             {archived}), {events} events, \
                             chains {chains_status} ({chains} chains); expected {expected:?} \
                             (session, events, chains, chain count)"
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
                        report,
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
