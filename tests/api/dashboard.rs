//! afw's WebSocket frames fed to a model of the real dashboard's rules (contract §3, §7).
//!
//! The dashboard's socket layer (`useWebSocket.handleMessage`) skips
//! `subscription_confirmed`, `pong` and `error`, drops every other frame that lacks a
//! top-level `type`, `sessionId` or `timestamp`, and hands the frame itself to its views:
//! the session lists read `data` (`data.id` first) on `session:*` frames, the terminal reads
//! `output`, `stream`, `stepNumber` and `action` at the top level, the step views read
//! `stepNumber`. The model applies those rules; the test fails if a stored event never
//! reaches a view, live or replayed.

use std::time::Duration;

use afw::config::Config;
use axum::http::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, Ws, event};

/// What the dashboard's views saw.
#[derive(Default, Debug)]
struct Dashboard {
    /// Frames the socket layer dropped as invalid.
    dropped: Vec<Value>,
    /// Types of the frames handed to the views, in order.
    seen: Vec<String>,
    /// Lines the terminal view wrote: `[#step action] output (stream)`.
    terminal: Vec<String>,
    /// `id:status` of each session the session list learnt from `data`.
    sessions: Vec<String>,
    /// Step numbers the step views read.
    steps: Vec<u64>,
}

impl Dashboard {
    fn feed(&mut self, frame: Value) {
        let kind = frame["type"].as_str().unwrap_or_default();
        if matches!(kind, "subscription_confirmed" | "pong" | "error") {
            return;
        }
        let valid = !kind.is_empty()
            && frame["sessionId"].as_str().is_some_and(|s| !s.is_empty())
            && frame.get("timestamp").is_some_and(|t| !t.is_null());
        if !valid {
            self.dropped.push(frame);
            return;
        }
        self.seen.push(kind.to_owned());
        match kind {
            "session:started" | "session:ended" | "session:updated" => {
                let id = frame["data"]["id"]
                    .as_str()
                    .expect("session frames carry data.id");
                let status = frame["data"]["status"].as_str().unwrap_or("?");
                self.sessions.push(format!("{id}:{status}"));
            }
            "terminal:output" => {
                let output = frame["output"].as_str().expect("output at the top level");
                let stream = frame["stream"].as_str().expect("stream at the top level");
                let step = frame["stepNumber"].as_u64();
                let action = frame["action"].as_str().unwrap_or("");
                self.terminal
                    .push(format!("[#{step:?} {action}] {output} ({stream})"));
            }
            k if k.starts_with("step:") => {
                self.steps.push(
                    frame["stepNumber"]
                        .as_u64()
                        .expect("stepNumber at the top level"),
                );
            }
            _ => {}
        }
    }

    async fn read(&mut self, ws: &mut Ws, frames: usize) {
        for _ in 0..frames {
            let frame = ws.next_json().await;
            self.feed(frame);
        }
    }
}

async fn hook_session(app: &TestApp) {
    app.event(event(
        "session:started",
        "s",
        json!({"cwd": "/w", "user": "alice", "hostname": "box", "platform": "linux"}),
    ))
    .await;
    app.event(event(
        "chain:compiled",
        "s",
        json!({"chainId": "s-1", "title": "t", "steps": [{"stepNumber": 1, "action": "code"}],
               "source": "flow"}),
    ))
    .await;
    app.event(event(
        "step:spawned",
        "s",
        json!({"stepNumber": 1, "action": "code"}),
    ))
    .await;
    let out = app
        .post(
            "/api/terminal/s/output",
            json!({"output": "cargo build", "stream": "stderr", "stepNumber": 1, "action": "code"}),
        )
        .await;
    assert_eq!(out.status, 200, "{}", out.body);
    app.event(event(
        "step:completed",
        "s",
        json!({"stepNumber": 1, "action": "code", "duration": 5}),
    ))
    .await;
    app.event(event("session:ended", "s", json!({"reason": "done"})))
        .await;
}

const EVENT_TYPES: [&str; 6] = [
    "session:started",
    "chain:compiled",
    "step:spawned",
    "terminal:output",
    "step:completed",
    "session:ended",
];

#[tokio::test]
async fn the_dashboard_model_sees_every_live_event_and_notice() {
    let app = TestApp::serve(Config::default()).await;
    let mut ws = app.ws().await;
    ws.subscribe("s", None).await;
    hook_session(&app).await;
    app.request(
        Method::PUT,
        "/api/sessions/s",
        Some(json!({"summary": "ok"})),
    )
    .await;
    app.post("/api/sessions/s/input", json!({"input": "yes"}))
        .await;

    let mut dashboard = Dashboard::default();
    dashboard.read(&mut ws, 8).await;
    ws.expect_silence(Duration::from_millis(100)).await;
    assert!(dashboard.dropped.is_empty(), "{:?}", dashboard.dropped);
    let mut expected: Vec<&str> = EVENT_TYPES.to_vec();
    expected.extend(["session:updated", "input:queued"]);
    assert_eq!(dashboard.seen, expected);
    assert_eq!(
        dashboard.sessions,
        ["s:in_progress", "s:completed", "s:completed"]
    );
    assert_eq!(dashboard.terminal, ["[#Some(1) code] cargo build (stderr)"]);
    assert_eq!(dashboard.steps, [1, 1]);
}

#[tokio::test]
async fn the_dashboard_model_sees_every_replayed_event() {
    let app = TestApp::serve(Config::default()).await;
    hook_session(&app).await;
    let mut ws = app.ws().await;
    ws.subscribe("s", Some(0)).await;
    let mut dashboard = Dashboard::default();
    dashboard.read(&mut ws, EVENT_TYPES.len()).await;
    assert!(dashboard.dropped.is_empty(), "{:?}", dashboard.dropped);
    assert_eq!(dashboard.seen, EVENT_TYPES);
    // Replayed frames carry the session as it is stored now.
    assert_eq!(dashboard.sessions, ["s:completed", "s:completed"]);
    assert_eq!(dashboard.terminal.len(), 1);
}

#[test]
fn the_model_drops_what_the_dashboard_drops() {
    let mut dashboard = Dashboard::default();
    // The old envelope hid the event's fields under `payload`; a frame without a session id
    // or timestamp is dropped by the dashboard's socket layer.
    dashboard.feed(json!({"type": "step:spawned", "sessionId": "s"}));
    dashboard.feed(json!({"sessionId": "s", "timestamp": "t"}));
    dashboard.feed(json!({"type": "pong"}));
    assert_eq!(dashboard.dropped.len(), 2);
    assert!(dashboard.seen.is_empty());
}
