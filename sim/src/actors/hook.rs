//! A hook: one Claude Code session posting its events through the load balancer.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use serde_json::json;

use super::{http, pick_up};
use crate::faults::Down;
use crate::plan::{EPOCH_MS, Plan, RETRY_END_MS, SeededRng, WORKLOAD_END_MS};
use crate::record::{Record, Shared, now_ms, record};

/// A hook: posts its session's events through random instances (a load balancer), retrying
/// refused writes, and polls for commands between events.
// Long on purpose: a hook's life (post each event, retry refused writes, poll for
// commands) reads top to bottom like the real hook's loop, and its state (rng, retries,
// the event counter) spans all of it.
pub(crate) async fn hook(
    id: usize,
    plan: Plan,
    rng_seed: u64,
    history: Shared,
    down: Down,
) -> turmoil::Result {
    let mut rng = SeededRng::seed_from_u64(rng_seed);
    let session = format!("hook-{id}");
    tokio::time::sleep(Duration::from_millis(2_000 + rng.random_range(0..500))).await;
    let quiet_at = plan
        .quiet_hook
        .filter(|(h, _)| *h == id)
        .map(|(_, f)| plan.faults[f].at_ms + plan.faults[f].heal_after_ms / 2);
    for n in 0..plan.events_per_hook as u64 {
        if now_ms() > WORKLOAD_END_MS || quiet_at.is_some_and(|t| now_ms() > t) {
            break;
        }
        let kind = if n == 0 {
            "session:started"
        } else {
            "file:modified"
        };
        let ev = json!({"type": kind, "sessionId": session, "timestamp": EPOCH_MS + now_ms(), "n": n, "cwd": "/w"});
        for _attempt in 0..40 {
            if now_ms() > RETRY_END_MS {
                break;
            }
            let instance = pick_up(&mut rng, plan.instances, &down);
            let started = now_ms();
            match http(instance, "POST", "/api/events", Some(&ev)).await {
                Ok((status, body)) => {
                    record(
                        &history,
                        Record::Post {
                            session: session.clone(),
                            n,
                            instance,
                            started,
                            status,
                            seq: body["seq"].as_u64(),
                        },
                    );
                    if status == 201 {
                        break;
                    }
                }
                Err(e) if e == "timeout" => record(
                    &history,
                    Record::Hang {
                        client: session.clone(),
                        what: format!("POST event {n} via {instance}"),
                    },
                ),
                // A crashed instance refuses connections: try another.
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        }
        if n % 5 == 2 {
            let instance = pick_up(&mut rng, plan.instances, &down);
            let started = now_ms();
            if let Ok((status, _)) =
                http(instance, "GET", &format!("/api/sessions/{session}"), None).await
            {
                record(
                    &history,
                    Record::Read {
                        session: session.clone(),
                        what: "session",
                        instance,
                        started,
                        status,
                    },
                );
            }
        }
        if n % 5 == 4 {
            let instance = pick_up(&mut rng, plan.instances, &down);
            let started = now_ms();
            let answer = http(
                instance,
                "GET",
                &format!("/api/sessions/{session}/commands"),
                None,
            )
            .await;
            if let Ok((status, _)) = &answer {
                record(
                    &history,
                    Record::Read {
                        session: session.clone(),
                        what: "commands",
                        instance,
                        started,
                        status: *status,
                    },
                );
            }
            if let Ok((200, body)) = answer {
                let ids: Vec<String> = body["commands"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["id"].as_str().map(str::to_owned))
                    .collect();
                if !ids.is_empty() {
                    record(
                        &history,
                        Record::Claimed {
                            session: session.clone(),
                            ids,
                        },
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
    }
    Ok(())
}
