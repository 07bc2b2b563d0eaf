//! 9. Deletes: a session whose `DELETE` was answered 204 (or 404 to a retry) is gone:
//!    from then on no instance serves it or its chains (404; 503 or no answer only while
//!    a fault lasts; a session archived first answers from the archive, `archived: true`,
//!    which counts as gone), after the last heal every instance answers 404 and no listing
//!    holds it, and its subscriber learns it within the quiet bound (`session:deleted`, or a
//!    resubscription's `recovered: false` with nothing stored), or, when a fault on the way
//!    (as invariant 8 reads it) hit the delete, within the quiet bound after its heal: the
//!    notice is published by the delete itself, and a notice lost in transit is made good
//!    by the resync that follows every Pub/Sub reconnect (a delete answered 404 after Redis
//!    lost its data deleted nothing, and is not judged here). A scratch session one of whose writes went unanswered may be brought back by that
//!    write landing late: counted, not judged.
//!
//! Nothing here reads anything but the recorded history.

use std::collections::BTreeMap;

use super::timely::{due, fault_windows};
use super::{Report, violation};
use crate::plan::FINAL_CHECK_MS;
use crate::record::Record;
use crate::world::Run;

const INVARIANT: &str = "9 deletes";

pub(super) fn check(run: &Run, report: &mut Report) {
    let windows = fault_windows(run);
    // A delete answered 404 after Redis lost its data deleted nothing: the session went
    // with the data, and its subscriber heard so (`recovered: false`) when it happened,
    // perhaps before the delete was sent; no notice follows a delete of nothing.
    let lost_first: Vec<&str> =
        run.history
            .records
            .iter()
            .filter_map(|(at, r)| match r {
                Record::Deleted {
                    session,
                    status: 404,
                    ..
                } if run.plan.faults.iter().any(|f| {
                    f.kind == crate::plan::FaultKind::RedisCrashLoseData && f.at_ms < *at
                }) =>
                {
                    Some(session.as_str())
                }
                _ => None,
            })
            .collect();
    let mut in_doubt: BTreeMap<&str, bool> = BTreeMap::new();
    for (at, r) in &run.history.records {
        match r {
            Record::ScratchWritten {
                session,
                in_doubt: d,
                ..
            } => {
                in_doubt.insert(session, *d);
            }
            Record::ReadDeleted {
                session,
                instance,
                path,
                status,
                listed,
                archived,
            } => {
                report.checks += 1;
                let after_heal = *at >= FINAL_CHECK_MS;
                // A session archived before its delete is read from the archive: gone
                // from live storage, its history kept.
                let status = if *archived { &404 } else { status };
                let fine = match listed {
                    Some(listed) => !after_heal || (*status == 200 && !listed),
                    None if after_heal => *status == 404,
                    None => matches!(status, 404 | 503 | 0),
                };
                let came_back = *status == 200 || *listed == Some(true);
                if fine {
                    continue;
                }
                if came_back && in_doubt.get(session.as_str()) == Some(&true) {
                    report.deletes_undone_in_doubt += 1;
                } else {
                    let listing = listed.map(|l| format!(", listed: {l}")).unwrap_or_default();
                    violation(
                        report,
                        INVARIANT,
                        format!(
                            "{session} was deleted, but instance {instance} answered GET \
                             {path} with {status}{listing} at {at} ms"
                        ),
                    );
                }
            }
            Record::DeleteHeard {
                session,
                instance,
                via,
                answered,
                heard_at,
            } => {
                if lost_first.contains(&session.as_str()) {
                    continue;
                }
                report.checks += 1;
                let due = due(&windows, *answered, [*instance, *via]);
                if heard_at.is_some_and(|h| h <= due) {
                    continue;
                }
                violation(
                    report,
                    INVARIANT,
                    format!(
                        "{session} deleted through instance {via} (answered at {answered} \
                         ms): its subscriber on instance {instance} learnt it \
                         at {heard_at:?}, due by {due} ms"
                    ),
                );
            }
            _ => {}
        }
    }
}
