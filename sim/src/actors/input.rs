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

/// The session of the waiter across fault `fault` (see [`Plan::waiter_faults`]).
pub(crate) fn waiting_room(plan: &Plan, fault: usize) -> &'static str {
    match plan.faults[fault].kind {
        FaultKind::KillPubsub => "waiting-room-kill",
        _ => "waiting-room",
    }
}

/// [`Plan::waiter_faults`]: one long poll on the instance a partition cuts off, spanning
/// the partition, and one input item queued through another instance while it lasts; or,
/// for a Pub/Sub kill, a long poll on instance 0 spanning the kill and an item queued
/// through instance 1 20 ms after it, while the bridges redial: only the resync after the
/// re-subscribe can wake the poll before its deadline, 10 s later.
pub(crate) async fn waiter(plan: Plan, fault: usize, history: Shared) -> turmoil::Result {
    let f = plan.faults[fault].clone();
    let (cut, type_after_ms, timeout_ms) = match f.kind {
        FaultKind::Partition(cut) | FaultKind::PartitionToRedis(cut) => (
            cut,
            800 + f.heal_after_ms / 3,
            (f.heal_after_ms + 4_000).min(30_000),
        ),
        FaultKind::KillPubsub => (0, 820, 10_800),
        _ => return Ok(()),
    };
    let other = (cut + 1) % plan.instances;
    let room = waiting_room(&plan, fault);
    // Item names are unique across sessions: `in-w-N` waits out a partition, `in-k-N` a kill.
    let tag = if room == "waiting-room" { "w" } else { "k" };
    let ev =
        json!({"type": "session:started", "sessionId": room, "timestamp": EPOCH_MS, "cwd": "/w"});
    // Created just before the fault, so that no earlier fault has wiped it.
    tokio::time::sleep(Duration::from_millis(
        f.at_ms.saturating_sub(1_500 + now_ms()),
    ))
    .await;
    if !write(other, "/api/events", &ev).await {
        return Ok(());
    }
    tokio::time::sleep(Duration::from_millis(
        f.at_ms.saturating_sub(800 + now_ms()),
    ))
    .await;
    let typist = async {
        tokio::time::sleep(Duration::from_millis(type_after_ms)).await;
        for attempt in 0..10 {
            let item = format!("in-{tag}-{attempt}");
            if queue_input(&history, other, room, item).await == 201 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::join!(typist, poll_input(&history, cut, room, timeout_ms));
    Ok(())
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
