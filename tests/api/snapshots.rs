//! Snapshots of representative responses, in the top-level `snapshots/` folder, with
//! generated ids and server times redacted so they pin shape and derived values only.

use axum::http::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, event, fixture};

const TIME_KEYS: &[&str] = &[
    "issuedAt",
    "deliveredAt",
    "ackedAt",
    "lastActivityAt",
    "uptime",
    "cutoffTime",
];
const ID_KEYS: &[&str] = &["commandId", "instanceId", "clientId", "epoch"];

fn is_generated_id(key: &str, val: &Value) -> bool {
    let generated = |s: &str| {
        ["cmd-", "session-", "input-"]
            .iter()
            .any(|p| s.starts_with(p))
    };
    (ID_KEYS.contains(&key) && !val.is_null())
        || (key == "id" && val.as_str().is_some_and(generated))
}

/// Replaces generated ids and server clock readings; client-sent values stay.
fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if TIME_KEYS.contains(&k.as_str()) && !val.is_null() {
                    *val = json!("[time]");
                } else if is_generated_id(k, val) {
                    *val = json!("[id]");
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

macro_rules! snap {
    ($name:expr, $value:expr) => {{
        let mut v: Value = $value;
        redact(&mut v);
        insta::with_settings!({
            snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"),
            prepend_module_to_snapshot => false,
            sort_maps => true,
        }, {
            insta::assert_json_snapshot!($name, v);
        });
    }};
}

#[tokio::test(start_paused = true)]
async fn snapshot_the_fixture_session_with_its_chain() {
    let app = TestApp::new();
    for ev in fixture() {
        app.event(ev).await;
    }
    let sid = "7f3c2a1e-5b9d-4e8f-a6c2-1d0e9b8a7c65";
    snap!(
        "session_with_chains",
        app.get(&format!("/api/sessions/{sid}")).await.body
    );
    snap!(
        "events_after_12",
        app.get(&format!("/api/events/{sid}?after=12")).await.body
    );
    snap!("sessions_list", app.get("/api/sessions").await.body);
}

#[tokio::test(start_paused = true)]
async fn snapshot_sessions_commands_and_input() {
    let app = TestApp::new();
    snap!(
        "session_created",
        app.post("/api/sessions", json!({"cwd": "/home/alice/src", "hostname": "h", "platform": "darwin", "userId": "alice"})).await.body
    );
    app.event(event(
        "session:started",
        "s",
        json!({"cwd": "/w", "user": "bob"}),
    ))
    .await;
    snap!(
        "command_queued",
        app.post(
            "/api/sessions/s/commands",
            json!({"type": "skip", "payload": {"stepNumber": 2}})
        )
        .await
        .body
    );
    snap!(
        "commands_claimed",
        app.get("/api/sessions/s/commands").await.body
    );
    app.post(
        "/api/sessions/s/input",
        json!({"input": "yes", "prompt": "Continue?"}),
    )
    .await;
    snap!("input_popped", app.get("/api/sessions/s/input").await.body);
    snap!("users", app.get("/api/users").await.body);
    snap!("health", app.get("/health").await.body);
}

#[tokio::test(start_paused = true)]
async fn snapshot_errors() {
    let app = TestApp::new();
    snap!(
        "error_unknown_event_type",
        app.post("/api/events", event("session:paused", "s", json!({})))
            .await
            .body
    );
    snap!(
        "error_event_validation",
        app.post(
            "/api/events",
            json!({"type": "file:created", "timestamp": "noon"})
        )
        .await
        .body
    );
    snap!(
        "error_session_not_found",
        app.get("/api/sessions/missing").await.body
    );
    snap!(
        "error_bad_query",
        app.get("/api/events/s/recent?limit=-1").await.body
    );
    snap!(
        "error_wrong_content_type",
        app.raw(
            Method::POST,
            "/api/events",
            Some("text/plain"),
            Some("{}".into())
        )
        .await
        .body
    );
}
