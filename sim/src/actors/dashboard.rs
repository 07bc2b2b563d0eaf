//! A dashboard: follows every hook session over the WebSocket, resuming after drops.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{http, pick_up, ws_connect};
use crate::client::event_seq;
use crate::faults::Down;
use crate::plan::{
    DASHBOARD_SILENCE, FINAL_CHECK_MS, Plan, SLOW_READ_MS, SeededRng, WORKLOAD_END_MS,
};
use crate::record::{Record, Shared, now_ms, record};

/// A dashboard: follows every hook session over the WebSocket of a random instance,
/// reconnecting (with `after`) when its plan says or when its instance goes away.
// Long on purpose: connect, subscribe, read frames, notice silence, reconnect with
// `after`: one client's life, in order, with its cursors spanning all of it.
pub(crate) async fn dashboard(
    id: usize,
    plan: Plan,
    rng_seed: u64,
    history: Shared,
    down: Down,
) -> turmoil::Result {
    let mut rng = SeededRng::seed_from_u64(rng_seed);
    let sessions: Vec<String> = (0..plan.hooks).map(|h| format!("hook-{h}")).collect();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    // The incarnation `last` counts in, per session, as confirmations and `session:*`
    // frames (their `data`) name it: sent with `after`, so a resume into a session that
    // began again starts over instead of continuing by seq.
    let mut epochs: BTreeMap<String, String> = BTreeMap::new();
    let mut reconnects: Vec<u64> = plan
        .reconnects
        .iter()
        .filter(|(d, _)| *d == id)
        .map(|(_, t)| *t)
        .collect();
    reconnects.sort_unstable();
    tokio::time::sleep(Duration::from_millis(1_000 + rng.random_range(0..500))).await;
    while now_ms() < FINAL_CHECK_MS + 8_000 {
        let instance = pick_up(&mut rng, plan.instances, &down);
        let Ok(mut ws) = ws_connect(instance).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        for s in &sessions {
            let mut msg = json!({"type": "subscribe", "sessionId": s});
            if let Some(after) = last.get(s) {
                msg["after"] = json!(after);
                if let Some(epoch) = epochs.get(s) {
                    msg["epoch"] = json!(epoch);
                }
            }
            if ws
                .send(Message::Text(msg.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        let leave_at = reconnects.iter().copied().find(|t| *t > now_ms());
        let mut code = None;
        loop {
            let deadline = leave_at
                .unwrap_or(FINAL_CHECK_MS + 8_000)
                .saturating_sub(now_ms());
            // Any frame, heartbeats included, starts the silence bound again.
            let wait = Duration::from_millis(deadline).min(DASHBOARD_SILENCE);
            let frame = match tokio::time::timeout(wait, ws.next()).await {
                Err(_) => break,
                Ok(Some(Ok(Message::Text(t)))) => {
                    serde_json::from_str::<Value>(t.as_str()).unwrap_or(Value::Null)
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    code = frame.map(|f| u16::from(f.code));
                    break;
                }
                Ok(Some(Ok(_))) => continue,
                Ok(_) => break,
            };
            let session = frame["sessionId"].as_str().unwrap_or_default().to_owned();
            match frame["type"].as_str() {
                Some("subscription_confirmed") if !session.is_empty() => {
                    let last_seq = frame["payload"]["lastSeq"].as_u64().unwrap_or(0);
                    let recovered = frame["payload"]["recovered"].as_bool();
                    let epoch = frame["payload"]["epoch"].as_str().map(str::to_owned);
                    match &epoch {
                        Some(e) => epochs.insert(session.clone(), e.clone()),
                        None => epochs.remove(&session),
                    };
                    record(
                        &history,
                        Record::Subscribed {
                            dashboard: id,
                            instance,
                            session: session.clone(),
                            after: last.get(&session).copied(),
                            last_seq,
                            recovered,
                            epoch,
                        },
                    );
                    // Not recovered: the dashboard reloads; it continues from lastSeq.
                    if recovered != Some(true) {
                        last.insert(session, last_seq);
                    }
                }
                _ if event_seq(&frame).is_some() => {
                    if plan.slow_dashboard == Some(id) && now_ms() < WORKLOAD_END_MS {
                        tokio::time::sleep(Duration::from_millis(SLOW_READ_MS)).await;
                    }
                    let seq = event_seq(&frame).unwrap_or(0);
                    if let Some(e) = frame["data"]["epoch"].as_str() {
                        epochs.insert(session.clone(), e.to_owned());
                    }
                    record(
                        &history,
                        Record::Event {
                            dashboard: id,
                            session: session.clone(),
                            seq,
                            n: frame["n"].as_u64(),
                        },
                    );
                    last.insert(session, seq);
                }
                _ => {}
            }
        }
        record(
            &history,
            Record::Disconnected {
                dashboard: id,
                code,
            },
        );
        let _ = ws.close(None).await;
    }
    Ok(())
}

/// A dashboard user opening session pages while the hooks work: every 0.5 to 2.5 s one
/// hook session, through any instance, recorded when it answered 200; and one time in
/// three setting that session's metadata (a note), recorded with its answer.
pub(crate) async fn viewer(
    plan: Plan,
    rng_seed: u64,
    history: Shared,
    down: Down,
) -> turmoil::Result {
    let mut rng = SeededRng::seed_from_u64(rng_seed);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    while now_ms() < WORKLOAD_END_MS {
        let session = format!("hook-{}", rng.random_range(0..plan.hooks));
        let instance = pick_up(&mut rng, plan.instances, &down);
        if let Ok((200, read)) =
            http(instance, "GET", &format!("/api/sessions/{session}"), None).await
        {
            record(
                &history,
                Record::Viewed {
                    session: session.clone(),
                    read,
                },
            );
        }
        if rng.random_bool(1.0 / 3.0) {
            let instance = pick_up(&mut rng, plan.instances, &down);
            let note = format!("note-{}", now_ms());
            let started = now_ms();
            let body = json!({ "metadata": { "note": note } });
            let status = http(
                instance,
                "PUT",
                &format!("/api/sessions/{session}"),
                Some(&body),
            )
            .await
            .map_or(0, |(s, _)| s);
            record(
                &history,
                Record::Updated {
                    session,
                    note,
                    instance,
                    started,
                    status,
                },
            );
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2_500))).await;
    }
    Ok(())
}
