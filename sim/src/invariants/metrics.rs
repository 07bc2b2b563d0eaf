//! Invariant 10, metrics: what the instances counted agrees with what the clients saw. Summed over
//! every instance incarnation (a restarted instance counts from zero again), the events
//! stored are at least the events hooks saw acknowledged as new, the duplicates at least
//! those answered `duplicate: true`, and the WebSocket frames sent at least the event
//! frames and confirmations the dashboards received. Other clients (the checker, the
//! cleaner, the typist's probes) write and read too, so these are lower bounds: a counter
//! that misses an increment, or counts a duplicate as stored, fails them.
//! Nothing here may run the simulation.

use afw::metrics::DirectionLabels;

use super::{Report, violation};
use crate::record::Record;
use crate::world::Run;

const INVARIANT: &str = "10 metrics agree with the clients";

pub(super) fn check(run: &Run, report: &mut Report) {
    let (mut new, mut duplicates, mut frames) = (0u64, 0u64, 0u64);
    for (_, r) in &run.history.records {
        match r {
            Record::Post {
                seq: Some(_),
                duplicate,
                ..
            } => {
                if *duplicate {
                    duplicates += 1;
                } else {
                    new += 1;
                }
            }
            Record::Event { .. } | Record::Subscribed { .. } => frames += 1,
            _ => {}
        }
    }
    let sum = |f: &dyn Fn(&afw::metrics::Metrics) -> u64| -> u64 {
        run.metrics.iter().map(|m| f(m)).sum()
    };
    let stored = sum(&|m| m.data.events_stored.get());
    let duplicate = sum(&|m| m.data.events_duplicate.get());
    let out = DirectionLabels { direction: "out" };
    let sent = sum(&|m| m.ws.frames.get_or_create(&out).get());
    for (what, counted, seen) in [
        ("events stored", stored, new),
        ("duplicates refused", duplicate, duplicates),
        ("WebSocket frames sent", sent, frames),
    ] {
        report.checks += 1;
        if counted < seen {
            violation(
                report,
                INVARIANT,
                format!(
                    "{what}: the instances counted {counted}, the clients saw {seen} \
                     ({} incarnations)",
                    run.metrics.len()
                ),
            );
        }
    }
}
