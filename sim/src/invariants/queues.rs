//! 3, input (commands are [`super::commands`]): every input item is popped at most
//!    once, every acknowledged item is popped, and no poll answers "empty" while an item
//!    waits.

use std::collections::BTreeMap;

use super::{Report, violation};
use crate::plan::FaultKind;
use crate::record::Record;
use crate::world::Run;

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
pub(super) fn check_input(run: &Run, report: &mut Report) {
    let (popped, failed_polls) = pops(run, report);
    let acked: Vec<(u64, &str, &str)> = run
        .history
        .records
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
    // When each item's request was sent: a poll that failed after that may have popped it
    // (the reply to the queueing can arrive after the poll's failure).
    let sent: BTreeMap<&str, u64> = run
        .history
        .records
        .iter()
        .filter_map(|(_, r)| match r {
            Record::InputQueued { item, started, .. } => Some((item.as_str(), *started)),
            _ => None,
        })
        .collect();
    all_popped(run, &acked, &sent, &popped, &failed_polls, report);
    no_false_empty(&run.history.records, &acked, &popped, report);
}

/// Until when a request that failed (answered 503 or not at all at `ended`) may still act
/// in Redis: when it answered, unless its instance's link was held or slowed then, or
/// Redis stalled, in which case its command may still run until that fault heals.
pub(super) fn lands_until(run: &Run, instance: usize, started: u64, ended: u64) -> u64 {
    run.plan
        .faults
        .iter()
        .filter(|f| {
            (f.kind == FaultKind::RedisStall
                || matches!(f.kind, FaultKind::Hold(i) | FaultKind::Latency(i, _) if i == instance))
                && f.at_ms <= ended
                && started <= f.at_ms + f.heal_after_ms
        })
        // Held packets arrive on release, give or take a link's latency.
        .map(|f| f.at_ms + f.heal_after_ms + 500)
        .max()
        .unwrap_or(0)
        .max(ended)
}

/// Whether Redis came back empty (a crash that loses data healed) at or after `t`: what
/// was stored before `t` may be gone by plan.
pub(super) fn wiped_after(run: &Run, t: u64) -> bool {
    run.plan
        .faults
        .iter()
        .any(|f| f.kind == FaultKind::RedisCrashLoseData && f.at_ms + f.heal_after_ms >= t)
}

/// Each item popped at most once: when each was taken, and the polls that failed (and so
/// may have taken one unseen).
///
/// A failed poll may pop until its pop can no longer reach Redis: when it answered, unless
/// its instance's link was held or slowed then, in which case the pop may still arrive (and
/// take an item queued after the poll gave up) until that fault heals.
fn pops<'a>(run: &'a Run, report: &mut Report) -> (BTreeMap<&'a str, u64>, Vec<(&'a str, u64)>) {
    let mut popped: BTreeMap<&str, u64> = BTreeMap::new();
    let mut failed_polls: Vec<(&str, u64)> = Vec::new();
    for (ended, r) in &run.history.records {
        if let Record::InputPolled {
            session,
            instance,
            started,
            status,
            item,
            ..
        } = r
        {
            if *status == 0 || *status == 503 {
                failed_polls.push((
                    session.as_str(),
                    lands_until(run, *instance, *started, *ended),
                ));
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
    (popped, failed_polls)
}

/// Every acknowledged item is popped, unless the plan wiped Redis after it was queued or a
/// failed poll of its session may have taken it (then it is counted "in doubt").
fn all_popped(
    run: &Run,
    acked: &[(u64, &str, &str)],
    sent: &BTreeMap<&str, u64>,
    popped: &BTreeMap<&str, u64>,
    failed_polls: &[(&str, u64)],
    report: &mut Report,
) {
    for (queued, session, item) in acked {
        report.checks += 1;
        if popped.contains_key(item) || wiped_after(run, *queued) {
            continue;
        }
        let sent = sent.get(item).copied().unwrap_or(*queued);
        if failed_polls
            .iter()
            .any(|(s, ended)| s == session && *ended >= sent)
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
}

/// No poll answers "empty" while an item acknowledged before its deadline waits.
fn no_false_empty(
    records: &[(u64, Record)],
    acked: &[(u64, &str, &str)],
    popped: &BTreeMap<&str, u64>,
    report: &mut Report,
) {
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
