//! Input typed for the hook sessions, and the hooks' input long polls that take it.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use serde_json::json;

use super::{http, http_within, pick_up, write};
use crate::faults::Down;
use crate::plan::{
    EPOCH_MS, FaultKind, Plan, REQUEST_BOUND, RETRY_END_MS, SeededRng, WORKLOAD_END_MS,
};
use crate::record::{Record, Shared, now_ms, record};

/// A dashboard user typing input for the hook sessions; a refused item is typed again
/// (as a new item: a 503 may still have been stored, see [`FaultKind::Latency`]).
pub(crate) async fn typist(
    plan: Plan,
    rng_seed: u64,
    history: Shared,
    down: Down,
) -> turmoil::Result {
    let mut rng = SeededRng::seed_from_u64(rng_seed);
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    for k in 0..plan.inputs {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..2_500))).await;
        let session = format!("hook-{}", rng.random_range(0..plan.hooks));
        for attempt in 0..10 {
            if now_ms() > WORKLOAD_END_MS {
                return Ok(());
            }
            let instance = pick_up(&mut rng, plan.instances, &down);
            let item = format!("in-{k}-{attempt}");
            if queue_input(&history, instance, &session, item).await == 201 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        }
    }
    Ok(())
}

/// Queues one input item, recorded: its status (0: no answer).
pub(crate) async fn queue_input(
    history: &Shared,
    instance: usize,
    session: &str,
    item: String,
) -> u16 {
    let started = now_ms();
    let status = http(
        instance,
        "POST",
        &format!("/api/sessions/{session}/input"),
        Some(&json!({ "input": item })),
    )
    .await
    .map_or(0, |(s, _)| s);
    record(
        history,
        Record::InputQueued {
            session: session.to_owned(),
            item,
            instance,
            started,
            status,
        },
    );
    status
}

/// One input poll (long when `timeout_ms > 0`), recorded: its status (0: no answer) and
/// whether it popped an item.
pub(crate) async fn poll_input(
    history: &Shared,
    instance: usize,
    session: &str,
    timeout_ms: u64,
) -> (u16, bool) {
    let started = now_ms();
    let answer = http_within(
        REQUEST_BOUND + Duration::from_millis(timeout_ms),
        instance,
        "GET",
        &format!("/api/sessions/{session}/input?timeout={timeout_ms}"),
        None,
    )
    .await;
    let (status, item) = match &answer {
        Ok((status, body)) => (*status, body["input"]["input"].as_str().map(str::to_owned)),
        Err(_) => (0, None),
    };
    let popped = item.is_some();
    record(
        history,
        Record::InputPolled {
            session: session.to_owned(),
            instance,
            started,
            timeout_ms,
            status,
            item,
        },
    );
    (status, popped)
}

/// How many waiters span a Pub/Sub kill, and how far apart their items are queued: the
/// bridges are back within some 30 ms, and a queue request takes tens to a hundred or so
/// ms before its notice is published, so the items start from 120 ms before the kill,
/// 35 ms apart, and one of their notices falls into the redial gap.
const KILL_WAITERS: usize = 5;
const KILL_SPACING_MS: u64 = 35;

/// The sessions of the waiters across fault `fault` (see [`Plan::waiter_faults`]).
pub(crate) fn waiting_rooms(plan: &Plan, fault: usize) -> Vec<String> {
    match plan.faults[fault].kind {
        FaultKind::KillPubsub => (0..KILL_WAITERS)
            .map(|j| format!("waiting-room-kill-{j}"))
            .collect(),
        _ => vec!["waiting-room".to_owned()],
    }
}

/// [`Plan::waiter_faults`]: one long poll on the instance a partition cuts off, spanning
/// the partition, and one input item queued through another instance while it lasts; or,
/// for a Pub/Sub kill, [`KILL_WAITERS`] long polls on instance 0 spanning the kill, each
/// for an item queued through instance 1 around it: the one whose notice is published
/// while the bridges redial can only be woken before its deadline (10 s later) by the
/// resync after the re-subscribe.
pub(crate) async fn waiter(plan: Plan, fault: usize, history: Shared) -> turmoil::Result {
    let f = plan.faults[fault].clone();
    let rooms = waiting_rooms(&plan, fault);
    let waits: Vec<Wait> = match f.kind {
        FaultKind::Partition(cut) | FaultKind::PartitionToRedis(cut) => vec![Wait {
            room: rooms[0].clone(),
            tag: "w".into(),
            cut,
            type_after_ms: 800 + f.heal_after_ms / 3,
            timeout_ms: (f.heal_after_ms + 4_000).min(30_000),
        }],
        FaultKind::KillPubsub => rooms
            .iter()
            .enumerate()
            .map(|(j, room)| Wait {
                room: room.clone(),
                tag: format!("k{j}"),
                cut: 0,
                type_after_ms: 800 - 120 + KILL_SPACING_MS * j as u64,
                timeout_ms: 10_800,
            })
            .collect(),
        _ => return Ok(()),
    };
    let other = |cut: usize| (cut + 1) % plan.instances;
    // Created just before the fault, so that no earlier fault has wiped them.
    tokio::time::sleep(Duration::from_millis(
        f.at_ms.saturating_sub(1_500 + now_ms()),
    ))
    .await;
    let mut ready = Vec::new();
    for w in waits {
        let ev = json!({"type": "session:started", "sessionId": w.room, "timestamp": EPOCH_MS, "cwd": "/w"});
        if write(other(w.cut), "/api/events", &ev).await {
            ready.push(w);
        }
    }
    tokio::time::sleep(Duration::from_millis(
        f.at_ms.saturating_sub(800 + now_ms()),
    ))
    .await;
    let history = &history;
    futures_util::future::join_all(ready.iter().map(|w| wait_across(history, w, other(w.cut))))
        .await;
    Ok(())
}

/// One waiter: its session, the tag of its item names (unique across sessions), the
/// instance it polls, and when (after the poll began) its item is queued.
struct Wait {
    room: String,
    tag: String,
    cut: usize,
    type_after_ms: u64,
    timeout_ms: u64,
}

/// A long poll on `w.cut`, and its item queued through `other` meanwhile.
async fn wait_across(history: &Shared, w: &Wait, other: usize) {
    let typist = async {
        tokio::time::sleep(Duration::from_millis(w.type_after_ms)).await;
        for attempt in 0..10 {
            let item = format!("in-{}-{attempt}", w.tag);
            if queue_input(history, other, &w.room, item).await == 201 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::join!(typist, poll_input(history, w.cut, &w.room, w.timeout_ms));
}

/// The input-inject hook of one session: long polls, one after the other.
pub(crate) async fn input_poller(
    hook: usize,
    plan: Plan,
    rng_seed: u64,
    history: Shared,
    down: Down,
) -> turmoil::Result {
    let mut rng = SeededRng::seed_from_u64(rng_seed);
    let session = format!("hook-{hook}");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    while now_ms() < RETRY_END_MS {
        let instance = pick_up(&mut rng, plan.instances, &down);
        // Short polls, and the hook's own long ones (30 s), ending by `RETRY_END_MS`.
        let timeout_ms = if rng.random_bool(0.5) {
            rng.random_range(300..4_000u64)
        } else {
            rng.random_range(5_000..=30_000u64)
        }
        .min(RETRY_END_MS.saturating_sub(now_ms()))
        .max(300);
        if poll_input(&history, instance, &session, timeout_ms).await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}
