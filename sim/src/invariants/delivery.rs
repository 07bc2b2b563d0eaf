//! 2. Every dashboard sees each event of its sessions exactly once, in `seq` order, and
//!    has caught up with the stored sequence at the end. A `seq` counts within one
//!    incarnation of the session (its epoch): between two confirmations a dashboard sees
//!    events of one epoch only, the one its confirmation named — an event of a session
//!    that began again (Redis lost its data) is never passed off as the continuation of
//!    the old one. Each delivered event's epoch is the one its hook's acknowledgement
//!    named for that `seq`.

use std::collections::BTreeMap;

use super::{Finals, Report, violation};
use crate::plan::FINAL_CHECK_MS;
use crate::record::Record;
use crate::world::Run;

pub(super) fn check(run: &Run, records: &[&Record], finals: &Finals<'_>, report: &mut Report) {
    let mut cursor: BTreeMap<(usize, &str), u64> = BTreeMap::new();
    let acked = acknowledged_epochs(records);
    // The epoch each dashboard follows each session in (None: not known yet).
    let mut following: BTreeMap<(usize, &str), Option<&str>> = BTreeMap::new();
    for r in records {
        match r {
            Record::Subscribed {
                dashboard,
                session,
                after,
                last_seq,
                recovered,
                epoch,
                ..
            } => {
                let at = match (after, recovered) {
                    (Some(after), Some(true)) => *after,
                    _ => *last_seq,
                };
                cursor.insert((*dashboard, session.as_str()), at);
                following.insert((*dashboard, session.as_str()), epoch.as_deref());
            }
            Record::Event {
                dashboard,
                session,
                seq,
                n,
            } => {
                report.checks += 1;
                let key = (*dashboard, session.as_str());
                let of = n.and_then(|n| acked.get(&(session.as_str(), n, *seq)).copied());
                match (following.get(&key).copied().flatten(), of) {
                    (Some(mine), Some(theirs)) if mine != theirs => violation(
                        report,
                        "2 one incarnation",
                        format!(
                            "dashboard {dashboard}, {session}: seq {seq} (event {n:?}) of epoch \
                             {theirs} delivered while it followed epoch {mine}, unannounced"
                        ),
                    ),
                    (None, Some(theirs)) => {
                        following.insert(key, Some(theirs));
                    }
                    _ => {}
                }
                match cursor.get(&key) {
                    Some(c) if *seq == c + 1 => {
                        cursor.insert(key, *seq);
                    }
                    Some(c) => {
                        violation(
                            report,
                            "2 exactly once, in order",
                            format!("dashboard {dashboard}, {session}: got seq {seq} after {c}"),
                        );
                        cursor.insert(key, *seq);
                    }
                    None => violation(
                        report,
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
        for (session, (_, last_seq)) in finals {
            report.checks += 1;
            let seen = cursor.get(&(d, *session)).copied().unwrap_or(0);
            if seen < *last_seq {
                violation(
                    report,
                    "2 exactly once, in order",
                    format!("dashboard {d}, {session}: caught up to {seen} of {last_seq}"),
                );
            }
        }
    }
}

/// A dashboard that afw disconnected says why with a close code the protocol names (1001
/// shutting down, 1008 silent for two heartbeats, 1013 too slow for its send queue), and
/// one kicked for being too slow comes back: it subscribes again (with `after` for the
/// sessions it had events of) before the dashboards stop.
pub(super) fn check_disconnects(run: &Run, report: &mut Report) {
    let records = &run.history.records;
    for (i, (at, r)) in records.iter().enumerate() {
        let Record::Disconnected { dashboard, code } = r else {
            continue;
        };
        report.checks += 1;
        if let Some(code) = code
            && ![1001, 1008, 1013].contains(code)
        {
            violation(
                report,
                "2 exactly once, in order",
                format!(
                    "dashboard {dashboard} at {at} ms: closed with {code}, not a code afw uses"
                ),
            );
        }
        // The dashboards stop at FINAL_CHECK_MS + 8 s; a kick in the last seconds has no
        // time left to come back.
        if *code == Some(1013) && *at + 5_000 < FINAL_CHECK_MS + 8_000 {
            let resumed = records[i..].iter().any(|(_, later)| {
                matches!(later, Record::Subscribed { dashboard: d, .. } if d == dashboard)
            });
            if !resumed {
                violation(
                    report,
                    "2 exactly once, in order",
                    format!("dashboard {dashboard}, kicked at {at} ms (1013), never resumed"),
                );
            }
        }
    }
}

/// The epoch each acknowledged `(session, n, seq)` was stored in, as its answer named it.
fn acknowledged_epochs<'a>(records: &[&'a Record]) -> BTreeMap<(&'a str, u64, u64), &'a str> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Post {
                session,
                n,
                status: 200 | 201,
                seq: Some(seq),
                epoch: Some(epoch),
                ..
            } => Some(((session.as_str(), *n, *seq), epoch.as_str())),
            _ => None,
        })
        .collect()
}
