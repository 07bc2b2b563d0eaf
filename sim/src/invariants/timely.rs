//! 8. Timeliness: what reaches a client late is as wrong as what never reaches it, when
//!    nothing excuses the wait. An acknowledged event reaches every dashboard subscribed to
//!    its session within [`QUIET_BOUND_MS`] of its acknowledgement; a long poll answers
//!    with an acknowledged input item within that bound of the later of its start and the
//!    item's acknowledgement. A fault on the way excuses the wait while it lasts and for
//!    [`HEAL_BOUND_MS`] after it healed (reconnect backoff, resubscribe, resync), when it
//!    began before the answer was due: one of Redis itself, or of the instance that stored
//!    the write or serves the reader (its link to Redis, its crash). A fault elsewhere
//!    excuses nothing.
//!
//! Exactness is [`super::delivery`]'s: this module only asks "in time?" of what did
//! arrive, and of events a dashboard should have had while it stayed connected.

use std::collections::BTreeMap;

use super::{Report, violation};
use crate::plan::{FINAL_CHECK_MS, FaultKind, WORKLOAD_END_MS};
use crate::record::Record;
use crate::world::Run;

/// With no fault about: an event goes Redis → Pub/Sub → every bridge → every inbox, and
/// an input notice wakes the long poll, in milliseconds; a second covers scheduling.
pub(crate) const QUIET_BOUND_MS: u64 = 1_000;
/// After a heal: the bridge redials within its backoff (at most 2 s), waits for the
/// store's link, resyncs; a held-back subscription retries every 500 ms.
pub(crate) const HEAL_BOUND_MS: u64 = 5_000;

const INVARIANT: &str = "8 timely";

/// A fault as `(start, healed, the instance it hits, or None for Redis itself)`.
pub(super) type Window = (u64, u64, Option<usize>);

/// When something that happened at `at`, on its way through `path` (instances), must have
/// been answered: `at` + the quiet bound, pushed past every fault on the way that began
/// before that and healed after it.
pub(super) fn due(windows: &[Window], at: u64, path: [usize; 2]) -> u64 {
    let mut due = at + QUIET_BOUND_MS;
    for &(start, healed, hits) in windows {
        let on_the_way = hits.is_none_or(|i| path.contains(&i));
        if on_the_way && start < due && healed + HEAL_BOUND_MS > due {
            due = healed + HEAL_BOUND_MS;
        }
    }
    due
}

/// The plan's faults as windows, by start.
pub(super) fn fault_windows(run: &Run) -> Vec<Window> {
    let mut w: Vec<Window> = run
        .plan
        .faults
        .iter()
        .map(|f| {
            let hits = match f.kind {
                FaultKind::Partition(i)
                | FaultKind::PartitionToRedis(i)
                | FaultKind::InstanceCrash(i)
                | FaultKind::Hold(i)
                | FaultKind::Latency(i, _) => Some(i),
                FaultKind::RedisCrashLoseData
                | FaultKind::RedisCrashKeepData
                | FaultKind::RedisStall
                | FaultKind::KillPubsub
                | FaultKind::RedisFull
                | FaultKind::ArchiveDown
                | FaultKind::ArchiveSlow(_) => None,
            };
            (f.at_ms, f.at_ms + f.heal_after_ms, hits)
        })
        .collect();
    w.sort_unstable();
    w
}

pub(super) fn check(run: &Run, report: &mut Report) {
    let windows = fault_windows(run);
    events_in_time(run, &windows, report);
    input_in_time(run, &windows, report);
}

/// One dashboard's view of one session: when it was confirmed, when its connection ended,
/// and when each seq arrived.
#[derive(Default)]
struct Watch {
    /// `(confirmed at, connection ended at, instance)` for each subscription, in order.
    spans: Vec<(u64, u64, usize)>,
    /// A confirmation said `recovered: false` at these times (the session started over).
    restarts: Vec<u64>,
    arrived: BTreeMap<u64, u64>,
}

fn watches(run: &Run) -> BTreeMap<(usize, &str), Watch> {
    let mut out: BTreeMap<(usize, &str), Watch> = BTreeMap::new();
    let end = FINAL_CHECK_MS + 8_000;
    for (at, r) in &run.history.records {
        match r {
            Record::Subscribed {
                dashboard,
                instance,
                session,
                recovered,
                ..
            } => {
                let w = out.entry((*dashboard, session.as_str())).or_default();
                w.spans.push((*at, end, *instance));
                if *recovered == Some(false) {
                    w.restarts.push(*at);
                }
            }
            Record::Disconnected { dashboard, .. } => {
                for ((d, _), w) in out.iter_mut() {
                    if d == dashboard {
                        for span in w.spans.iter_mut().filter(|s| s.1 == end) {
                            span.1 = *at;
                        }
                    }
                }
            }
            Record::Event {
                dashboard,
                session,
                seq,
                ..
            } => {
                out.entry((*dashboard, session.as_str()))
                    .or_default()
                    .arrived
                    .entry(*seq)
                    .or_insert(*at);
            }
            _ => {}
        }
    }
    out
}

/// Every acknowledged event reached, in time, each dashboard that was subscribed to its
/// session when it was acknowledged and stayed connected until it was due (the slow
/// dashboard: by a little after the workload ends), except across a `recovered: false`.
fn events_in_time(run: &Run, windows: &[Window], report: &mut Report) {
    let watches = watches(run);
    for (at, r) in &run.history.records {
        let Record::Post {
            session,
            instance: writer,
            status: 200 | 201,
            seq: Some(seq),
            ..
        } = r
        else {
            continue;
        };
        for ((d, s), w) in &watches {
            if *s != session.as_str() {
                continue;
            }
            // The subscription in force when the event was acknowledged.
            let Some(&(_, _, reader)) = w.spans.iter().rev().find(|sp| sp.0 <= *at) else {
                continue;
            };
            let due_all = due(windows, *at, [*writer, reader]);
            // The slow dashboard reads slowly while the hooks work, on purpose: it has
            // until a little after they stop, then it reads at full speed.
            let due = if run.plan.slow_dashboard == Some(*d) {
                due_all.max(WORKLOAD_END_MS + HEAL_BOUND_MS)
            } else {
                due_all
            };
            let watching = w
                .spans
                .iter()
                .any(|&(from, to, _)| from <= *at && due <= to);
            let restarted = w.restarts.iter().any(|t| (*at..=due).contains(t));
            if !watching || restarted {
                continue;
            }
            report.checks += 1;
            match w.arrived.get(seq) {
                Some(got) if *got <= due => {}
                Some(got) => violation(
                    report,
                    INVARIANT,
                    format!(
                        "dashboard {d}, {session}: seq {seq} acknowledged at {at} ms arrived \
                         at {got} ms, due by {due} ms"
                    ),
                ),
                None => violation(
                    report,
                    INVARIANT,
                    format!(
                        "dashboard {d}, {session}: seq {seq} acknowledged at {at} ms never \
                         arrived (due by {due} ms, connected throughout)"
                    ),
                ),
            }
        }
    }
}

/// A long poll that got an acknowledged item got it in time: not at its deadline when the
/// item was there long before (a lost wake-up).
fn input_in_time(run: &Run, windows: &[Window], report: &mut Report) {
    let acked: BTreeMap<&str, (u64, usize)> = run
        .history
        .records
        .iter()
        .filter_map(|(at, r)| match r {
            Record::InputQueued {
                item,
                instance,
                status: 201,
                ..
            } => Some((item.as_str(), (*at, *instance))),
            _ => None,
        })
        .collect();
    for (answered, r) in &run.history.records {
        let Record::InputPolled {
            session,
            instance: poller,
            started,
            timeout_ms,
            status: 200,
            item: Some(item),
            ..
        } = r
        else {
            continue;
        };
        let Some(&(queued, typist)) = acked.get(item.as_str()) else {
            continue;
        };
        if *timeout_ms == 0 {
            continue;
        }
        report.checks += 1;
        let due = due(windows, queued.max(*started), [typist, *poller]);
        if *answered > due {
            violation(
                report,
                INVARIANT,
                format!(
                    "{session}: a long poll started at {started} ms ({timeout_ms} ms) got \
                     {item}, acknowledged at {queued} ms, only at {answered} ms (due by {due} ms)"
                ),
            );
        }
    }
}
