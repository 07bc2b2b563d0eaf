//! The cleaner: a dashboard user removing finished sessions (`DELETE /api/sessions/:id`),
//! as the dashboard's session list lets them, while the hooks work and faults come and go.
//!
//! For each of the plan's scratch sessions (`gone-K`): a short hook session (a chain, and
//! `session:ended`) is posted, a WebSocket subscribes to it, the session is deleted through
//! any instance (retried until 204 or 404), and every instance is asked for it and for its
//! chains right after. Actors only record; [`crate::invariants`] judges.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::script::hook_script;
use super::{http, pick_up, ws_connect};
use crate::client::WsClient;
use crate::faults::Down;
use crate::plan::{EPOCH_MS, Plan, SeededRng, WORKLOAD_END_MS};
use crate::record::{Record, Shared, now_ms, record};

/// How long the subscriber listens for `session:deleted` after the delete was answered:
/// past the longest fault (4 s) and its heal bound (5 s).
pub(crate) const LISTEN_MS: u64 = 12_000;

/// The scratch session `k`.
pub(crate) fn scratch(k: usize) -> String {
    format!("gone-{k}")
}

/// The chain ids a scratch session's script can hold (`hook_script` names them so).
pub(crate) fn scratch_chains(k: usize) -> Vec<String> {
    (1..=4).map(|c| format!("{}-c{c}", scratch(k))).collect()
}

pub(crate) async fn cleaner(
    plan: Plan,
    rng_seed: u64,
    history: Shared,
    down: Down,
) -> turmoil::Result {
    let mut rng = SeededRng::seed_from_u64(rng_seed);
    for k in 0..plan.deletes {
        let at = rng.random_range(2_500..WORKLOAD_END_MS - 4_000);
        tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await;
        let session = scratch(k);
        let len = rng.random_range(5..=9usize);
        let script = hook_script(rng_seed ^ (k as u64 + 1), &session, len);
        post_all(&history, &plan, &mut rng, &down, &session, &script).await;
        let watch_on = pick_up(&mut rng, plan.instances, &down);
        let ws = subscribe(watch_on, &session).await;
        let Some((via, answered)) = delete(&history, &plan, &mut rng, &down, &session).await else {
            continue;
        };
        if let Some(ws) = ws {
            let until = answered + LISTEN_MS;
            let heard_at = listen(ws, &mut rng, (&plan, &down), &session, until).await;
            record(
                &history,
                Record::DeleteHeard {
                    session: session.clone(),
                    instance: watch_on,
                    via,
                    answered,
                    heard_at,
                },
            );
        }
        read_back(&history, &plan, k).await;
    }
    Ok(())
}

/// Posts the script one event at a time (a few tries each); records whether every event
/// was acknowledged and whether any attempt may have been stored unacknowledged.
async fn post_all(
    history: &Shared,
    plan: &Plan,
    rng: &mut SeededRng,
    down: &Down,
    session: &str,
    script: &[Value],
) {
    let (mut acked, mut in_doubt) = (true, false);
    for body in script {
        let mut ev = body.clone();
        ev["sessionId"] = json!(session);
        let mut stored = false;
        for _ in 0..12 {
            ev["timestamp"] = json!(EPOCH_MS + now_ms());
            let instance = pick_up(rng, plan.instances, down);
            match http(instance, "POST", "/api/events", Some(&ev)).await {
                Ok((201, _)) => {
                    stored = true;
                    break;
                }
                // 4xx: refused as a whole, nothing stored.
                Ok((s, _)) if (400..500).contains(&s) && s != 408 => {}
                _ => in_doubt = true,
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        acked &= stored;
    }
    record(
        history,
        Record::ScratchWritten {
            session: session.to_owned(),
            acked,
            in_doubt,
        },
    );
}

/// A WebSocket on `instance` subscribed to `session`, once its subscription is confirmed
/// (within 2 s; the connection's own confirmation, without `sessionId`, comes first).
async fn subscribe(instance: usize, session: &str) -> Option<WsClient> {
    let mut ws = ws_connect(instance).await.ok()?;
    let msg = json!({"type": "subscribe", "sessionId": session});
    ws.send(Message::Text(msg.to_string().into())).await.ok()?;
    let confirmed = async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m
                && serde_json::from_str::<Value>(t.as_str()).is_ok_and(|f| {
                    f["type"] == "subscription_confirmed" && f["sessionId"] == session
                })
            {
                return true;
            }
        }
        false
    };
    match tokio::time::timeout(Duration::from_secs(2), confirmed).await {
        Ok(true) => Some(ws),
        _ => None,
    }
}

/// Deletes `session` through any instance until one answers 204 or 404 (a few seconds);
/// every attempt recorded. The instance and the time of the answer that settled it.
async fn delete(
    history: &Shared,
    plan: &Plan,
    rng: &mut SeededRng,
    down: &Down,
    session: &str,
) -> Option<(usize, u64)> {
    for _ in 0..16 {
        let instance = pick_up(rng, plan.instances, down);
        let started = now_ms();
        let path = format!("/api/sessions/{session}");
        let status = http(instance, "DELETE", &path, None)
            .await
            .map_or(0, |(s, _)| s);
        record(
            history,
            Record::Deleted {
                session: session.to_owned(),
                instance,
                started,
                status,
            },
        );
        if status == 204 || status == 404 {
            return Some((instance, now_ms()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// Reads frames until the subscriber learns that `session` is gone (its time), or
/// `until`: `session:deleted`, or a confirmation saying `recovered: false` with nothing
/// stored (what a resync or a resubscription answers for a session that vanished). A
/// dropped connection is dialled again on any instance, resubscribing with `after`, as
/// the dashboard does.
async fn listen(
    mut ws: WsClient,
    rng: &mut SeededRng,
    (plan, down): (&Plan, &Down),
    session: &str,
    until: u64,
) -> Option<u64> {
    while now_ms() < until {
        let wait = Duration::from_millis(until.saturating_sub(now_ms()).max(1));
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let f: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if f["sessionId"] == session && tells_gone(&f) {
                    let _ = ws.close(None).await;
                    return Some(now_ms());
                }
            }
            Ok(Some(Ok(_))) => {}
            Err(_) => return None,
            Ok(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let instance = pick_up(rng, plan.instances, down);
                if let Ok(mut again) = ws_connect(instance).await {
                    let msg = json!({"type": "subscribe", "sessionId": session, "after": 1});
                    if again
                        .send(Message::Text(msg.to_string().into()))
                        .await
                        .is_ok()
                    {
                        ws = again;
                    }
                }
            }
        }
    }
    None
}

/// Whether a frame about a subscribed session says it is gone.
fn tells_gone(f: &Value) -> bool {
    f["type"] == "session:deleted"
        || (f["type"] == "subscription_confirmed"
            && f["payload"]["recovered"] == false
            && f["payload"]["lastSeq"] == 0)
}

/// Right after the delete: every instance asked for the session and its chains.
pub(crate) async fn read_back(history: &Shared, plan: &Plan, k: usize) {
    let session = scratch(k);
    let mut paths = vec![
        format!("/api/sessions/{session}"),
        format!("/api/sessions/{session}/chains"),
    ];
    paths.extend(scratch_chains(k).iter().map(|c| format!("/api/chains/{c}")));
    for instance in 0..plan.instances {
        for path in &paths {
            let (status, archived) = http(instance, "GET", path, None)
                .await
                .map_or((0, false), |(s, b)| (s, s == 200 && b["archived"] == true));
            record(
                history,
                Record::ReadDeleted {
                    session: session.clone(),
                    instance,
                    path: path.clone(),
                    status,
                    listed: None,
                    archived,
                },
            );
        }
    }
}
