//! 2. Every dashboard sees each event of its sessions exactly once, in `seq` order, and
//!    has caught up with the stored sequence at the end.

use std::collections::BTreeMap;

use super::{Finals, Report, violation};
use crate::record::Record;
use crate::world::Run;

pub(super) fn check(run: &Run, records: &[&Record], finals: &Finals<'_>, report: &mut Report) {
    let mut cursor: BTreeMap<(usize, &str), u64> = BTreeMap::new();
    for r in records {
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
