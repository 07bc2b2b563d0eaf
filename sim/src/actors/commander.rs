//! Commands both ways: the dashboard user who queues them (one now and then, or a burst of
//! several at once), and the hooks' command polls that claim them, some with a `?lease=`
//! that they let expire (a poller that died before acknowledging), others acknowledging
//! what they got.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use serde_json::json;

use super::{http, pick_up};
use crate::faults::Down;
use crate::plan::{Plan, SeededRng, WORKLOAD_END_MS};
use crate::record::{Record, Shared, now_ms, record};

/// Kinds that need no payload: which kind does not matter to storage.
const KINDS: [&str; 3] = ["pause", "resume", "cancel"];

/// Queues commands for the hook sessions: mostly one at a time, a burst of three to eight
/// now and then (a user clicking through several).
pub(crate) async fn commander(
    plan: Plan,
    rng_seed: u64,
    history: Shared,
    down: Down,
) -> turmoil::Result {
    let mut rng = SeededRng::seed_from_u64(rng_seed);
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    while now_ms() < WORKLOAD_END_MS {
        let session = format!("hook-{}", rng.random_range(0..plan.hooks));
        let burst = if rng.random_bool(0.2) {
            rng.random_range(3..=8)
        } else {
            1
        };
        for _ in 0..burst {
            let instance = pick_up(&mut rng, plan.instances, &down);
            let kind = KINDS[rng.random_range(0..KINDS.len())];
            queue(&history, instance, &session, kind).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..3_000))).await;
    }
    Ok(())
}

async fn queue(history: &Shared, instance: usize, session: &str, kind: &str) {
    let started = now_ms();
    let answer = http(
        instance,
        "POST",
        &format!("/api/sessions/{session}/commands"),
        Some(&json!({ "type": kind })),
    )
    .await;
    let (status, id) = match &answer {
        Ok((status, body)) => (*status, body["commandId"].as_str().map(str::to_owned)),
        Err(_) => (0, None),
    };
    record(
        history,
        Record::CommandQueued {
            session: session.to_owned(),
            instance,
            started,
            status,
            id,
        },
    );
}

/// How one hook claims its commands: how often it polls, and how it treats what it got.
pub(crate) struct Claims {
    rng: SeededRng,
    /// Poll every this many rounds (a rare poller lets several commands pile up).
    pub(crate) every: u64,
}

impl Claims {
    pub(crate) fn new(rng_seed: u64) -> Self {
        let mut rng = SeededRng::seed_from_u64(rng_seed);
        let every = if rng.random_bool(0.3) { 15 } else { 5 };
        Self { rng, every }
    }

    /// One claim, recorded with its answer: with a lease (300 ms to 3 s) two times in five;
    /// each command got is acknowledged with probability one half (a leased one left
    /// unacknowledged must come back once its lease expired).
    pub(crate) async fn claim(
        &mut self,
        history: &Shared,
        plan: &Plan,
        down: &Down,
        session: &str,
    ) {
        let rng = &mut self.rng;
        let instance = pick_up(rng, plan.instances, down);
        let lease = rng
            .random_bool(0.4)
            .then(|| rng.random_range(300..3_000u64));
        let acks: Vec<bool> = (0..16).map(|_| rng.random_bool(0.5)).collect();
        let (_, claimed) = claim(history, instance, session, lease).await;
        for (id, ack) in claimed.iter().zip(acks.into_iter().cycle()) {
            if ack {
                acknowledge(history, instance, id).await;
            }
        }
    }
}

/// One claim of a session's commands, recorded: its status (0: no answer) and the ids it
/// got.
pub(crate) async fn claim(
    history: &Shared,
    instance: usize,
    session: &str,
    lease: Option<u64>,
) -> (u16, Vec<String>) {
    let query = lease.map(|l| format!("?lease={l}")).unwrap_or_default();
    let started = now_ms();
    let answer = http(
        instance,
        "GET",
        &format!("/api/sessions/{session}/commands{query}"),
        None,
    )
    .await;
    let (status, ids) = match &answer {
        Ok((status, body)) => (
            *status,
            body["commands"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["id"].as_str().map(str::to_owned))
                .collect(),
        ),
        Err(_) => (0, Vec::new()),
    };
    record(
        history,
        Record::Claimed {
            session: session.to_owned(),
            instance,
            started,
            lease,
            status,
            ids: ids.clone(),
        },
    );
    (status, ids)
}

async fn acknowledge(history: &Shared, instance: usize, id: &str) {
    let started = now_ms();
    let status = http(
        instance,
        "POST",
        &format!("/api/commands/{id}/ack"),
        Some(&json!({ "result": "done" })),
    )
    .await
    .map_or(0, |(s, _)| s);
    record(
        history,
        Record::Acked {
            id: id.to_owned(),
            started,
            status,
        },
    );
}
