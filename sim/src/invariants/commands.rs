//! 3, commands: a command is claimed by one poll at a time, as its lease says, and none is
//! lost.
//!
//! * Claimed without a lease, a command is never handed out again; claimed with a lease of
//!   L ms by a poll sent at t, not again by a poll answered before t + L; once
//!   acknowledged (200), never again.
//! * Every acknowledged (201) command is claimed at least once; a leased claim never
//!   acknowledged is claimed again (the checker's final claim comes after every lease
//!   expired). Unless the plan wiped Redis after it, or a claim of its session (or its
//!   acknowledgement) failed after it and may have taken it: then it is "in doubt",
//!   counted and reported, as input is.

use std::collections::BTreeMap;

use super::queues::{lands_until, wiped_after};
use super::{Report, violation};
use crate::record::Record;
use crate::world::Run;

const INVARIANT: &str = "3 queue claim semantics";

/// What happened to one command, in the order recorded.
#[derive(Default)]
struct Life<'a> {
    session: &'a str,
    queued: Option<u64>,
    /// `(sent, answered, lease)` of each claim that got it.
    claims: Vec<(u64, u64, Option<u64>)>,
    /// When an acknowledgement of it answered 200.
    acked: Option<u64>,
    /// An acknowledgement failed (it may have landed).
    ack_failed: bool,
}

pub(super) fn check(run: &Run, report: &mut Report) {
    let mut lives: BTreeMap<&str, Life<'_>> = BTreeMap::new();
    // Claims that failed, per session: until when each may still have taken commands.
    let mut failed: Vec<(&str, u64)> = Vec::new();
    for (at, r) in &run.history.records {
        match r {
            Record::CommandQueued {
                session,
                status: 201,
                id: Some(id),
                ..
            } => {
                let life = lives.entry(id.as_str()).or_default();
                life.session = session;
                life.queued = Some(*at);
            }
            Record::Claimed {
                session,
                instance,
                started,
                lease,
                status,
                ids,
                ..
            } => {
                if *status != 200 {
                    failed.push((session.as_str(), lands_until(run, *instance, *started, *at)));
                }
                for id in ids {
                    let life = lives.entry(id.as_str()).or_default();
                    life.session = session;
                    claimed_again(id, life, *started, *at, report);
                    life.claims.push((*started, *at, *lease));
                }
            }
            Record::Acked { id, status, .. } => {
                report.checks += 1;
                let life = lives.entry(id.as_str()).or_default();
                match status {
                    200 => life.acked = life.acked.or(Some(*at)),
                    _ => life.ack_failed = true,
                }
            }
            _ => {}
        }
    }
    for (id, life) in &lives {
        none_lost(run, id, life, &failed, report);
    }
}

/// A claim sent at `sent`, answered at `answered`, handed out `id` again: allowed only
/// once every earlier claim's lease expired and no acknowledgement answered before it.
fn claimed_again(id: &str, life: &Life<'_>, sent: u64, answered: u64, report: &mut Report) {
    report.checks += 1;
    if let Some(acked) = life.acked
        && acked < sent
    {
        violation(
            report,
            INVARIANT,
            format!("{id} claimed at {sent} ms, after its acknowledgement at {acked} ms"),
        );
        return;
    }
    let Some(&(before, _, lease)) = life.claims.last() else {
        return;
    };
    match lease {
        None => violation(report, INVARIANT, format!("{id} claimed twice")),
        Some(l) if answered < before + l => violation(
            report,
            INVARIANT,
            format!(
                "{id} claimed at {before} ms with a {l} ms lease and again by a claim \
                 answered at {answered} ms, before the lease expired"
            ),
        ),
        Some(_) => {}
    }
}

/// Every acknowledged command was claimed, and claimed again after a lease that was let
/// expire, unless the plan or a failed claim excuses it.
fn none_lost(run: &Run, id: &str, life: &Life<'_>, failed: &[(&str, u64)], report: &mut Report) {
    let Some(queued) = life.queued else {
        return;
    };
    let doubt_after = |t: u64| failed.iter().any(|(s, at)| *s == life.session && *at >= t);
    report.checks += 1;
    // Since when it must have been in Redis, and since when a claim could take it.
    let (stored, since, what) = match life.claims.last() {
        None => (queued, queued, "was queued but never claimed"),
        Some(&(sent, _, Some(lease))) if life.acked.is_none() && !life.ack_failed => (
            sent,
            sent + lease,
            "was claimed with a lease, never acknowledged, and never claimed again",
        ),
        Some(_) => return,
    };
    if wiped_after(run, stored) {
        return;
    }
    if doubt_after(since) {
        report.commands_in_doubt += 1;
    } else {
        violation(report, INVARIANT, format!("{} {id} {what}", life.session));
    }
}
