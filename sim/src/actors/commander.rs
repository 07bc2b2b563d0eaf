//! The dashboard user who pauses sessions now and then.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use serde_json::json;

use super::{http, pick_up};
use crate::faults::Down;
use crate::plan::{Plan, SeededRng, WORKLOAD_END_MS};
use crate::record::now_ms;

/// Queues a pause for every hook session now and then (the dashboard's commands).
pub(crate) async fn commander(plan: Plan, rng_seed: u64, down: Down) -> turmoil::Result {
    let mut rng = SeededRng::seed_from_u64(rng_seed);
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    while now_ms() < WORKLOAD_END_MS {
        let session = format!("hook-{}", rng.random_range(0..plan.hooks));
        let instance = pick_up(&mut rng, plan.instances, &down);
        let _ = http(
            instance,
            "POST",
            &format!("/api/sessions/{session}/commands"),
            Some(&json!({"type": "pause"})),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..3_000))).await;
    }
    Ok(())
}
