//! 1. Acknowledged writes are stored at the end, unless the plan destroyed Redis data
//!    (then the loss is counted and reported, not hidden); each exactly once, however
//!    often the hook retried it (its `eventId` makes a retry a duplicate). A write
//!    answered 503 that a later retry finds stored is counted when a fault overlapped
//!    the 503 (the script ran, its reply was lost to afw's timeout) and a violation when
//!    none did (afw refused a write it had committed).

use std::collections::{BTreeMap, BTreeSet};

use super::timely::fault_windows;
use super::{Finals, Report, violation};
use crate::record::Record;
use crate::world::Run;

pub(super) fn check(run: &Run, records: &[&Record], finals: &Finals<'_>, report: &mut Report) {
    let mut acked: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for r in records {
        if let Record::Post {
            session,
            n,
            status: 200 | 201,
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
                report,
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
                report,
                "1 acknowledged writes survive",
                format!("{session}: acknowledged but not stored: {missing:?}"),
            );
        }
    }
}

/// Each event `n` is stored at most once in each session's final read.
pub(super) fn check_stored_once(finals: &Finals<'_>, report: &mut Report) {
    for (session, (events, _)) in finals {
        report.checks += 1;
        let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
        for (seq, n) in events.iter() {
            let Some(n) = n else { continue };
            if let Some(first) = seen.insert(*n, *seq) {
                violation(
                    report,
                    "1 stored exactly once",
                    format!("{session}: event {n} stored twice, at seq {first} and {seq}"),
                );
            }
        }
    }
}

/// A failed attempt to post an event: (started, ended, status; 0 for no answer).
type Attempt = (u64, u64, u16);

/// A write answered 503 whose retry was answered `duplicate: true` was stored by that
/// attempt (or by an unanswered one). Judged by whether any fault overlapped the attempts
/// that may have stored it.
pub(super) fn check_refused_but_stored(run: &Run, records: &[(u64, Record)], report: &mut Report) {
    let windows = fault_windows(run);
    // (session, n) → the failed attempts so far.
    let mut failed: BTreeMap<(&str, u64), Vec<Attempt>> = BTreeMap::new();
    for (ended, r) in records {
        let Record::Post {
            session,
            n,
            started,
            status,
            duplicate,
            ..
        } = r
        else {
            continue;
        };
        let key = (session.as_str(), *n);
        if matches!(status, 0 | 503) {
            failed
                .entry(key)
                .or_default()
                .push((*started, *ended, *status));
            continue;
        }
        let attempts = failed.remove(&key).unwrap_or_default();
        if !*duplicate || attempts.is_empty() {
            continue;
        }
        report.checks += 1;
        if attempts.iter().any(|a| a.2 == 0) {
            // An attempt nobody heard the answer to may have stored it.
            report.stored_unanswered += 1;
            continue;
        }
        let faulted = attempts.iter().any(|(from, to, _)| {
            windows
                .iter()
                .any(|(at, heal, _)| *at <= to + 1_000 && *from <= *heal + 1_000)
        });
        if faulted {
            report.refused_but_stored += 1;
        } else {
            violation(
                report,
                "1 a 503 stores nothing",
                format!(
                    "{session}: event {n} answered 503 ({attempts:?}) with no fault \
                     about, yet stored"
                ),
            );
        }
    }
}
