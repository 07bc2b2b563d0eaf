//! The real clients' calls of contract §7, replayed in the order a Claude Code session makes
//! them, asserting exactly the fields those clients read.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, fixture};

const SID: &str = "7f3c2a1e-5b9d-4e8f-a6c2-1d0e9b8a7c65";

/// What the control-check hook does before each sub-agent: block on pause/cancel.
async fn control_check_blocks(app: &TestApp) -> bool {
    let res = app.get(&format!("/api/sessions/{SID}/commands")).await;
    assert!(res.status.is_success());
    res.body["commands"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| (c["type"] == "pause" || c["type"] == "cancel") && c["status"] == "pending")
}

#[tokio::test]
async fn a_hook_session_runs_its_whole_loop() {
    let app = Arc::new(TestApp::new());
    let events = fixture();
    let (ended, before_end) = events.split_last().unwrap();
    assert_eq!(ended["type"], "session:ended");

    // session-start, chain-parse and the first step hooks: they only read `response.ok`.
    for ev in before_end.iter().take(4) {
        let res = app.post("/api/events", ev.clone()).await;
        assert!(res.status.is_success(), "{}", res.body);
    }
    let session = app.get(&format!("/api/sessions/{SID}")).await.body;
    assert_eq!(session["status"], "in_progress");
    assert_eq!(session["cwd"], "/home/alice/src/shop-api");
    assert_eq!(session["chains"][0]["steps"].as_array().unwrap().len(), 3);

    // No command yet: the next sub-agent is not blocked.
    assert!(!control_check_blocks(&app).await);

    // The dashboard pauses; it reads `commandId`.
    let res = app
        .post(
            &format!("/api/sessions/{SID}/commands"),
            json!({"type": "pause", "payload": {"graceful": true, "reason": "review"}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    let command_id = res.body["commandId"].as_str().unwrap().to_owned();

    // The MCP server's check_commands reads id, type, payload ... but here the
    // control-check hook polls first and blocks the agent.
    assert!(control_check_blocks(&app).await);
    // The command was handed out once.
    assert!(!control_check_blocks(&app).await);

    // The MCP server acknowledges; it reads `acknowledged`.
    let ack = app
        .post(
            &format!("/api/commands/{command_id}/ack"),
            json!({"result": "paused"}),
        )
        .await;
    assert_eq!(ack.body["acknowledged"], true);

    // A retry queued by the dashboard is seen by the MCP server's check_commands.
    app.post(
        &format!("/api/sessions/{SID}/commands"),
        json!({"type": "retry", "payload": {"stepNumber": 2}}),
    )
    .await;
    let polled = app.get(&format!("/api/sessions/{SID}/commands")).await.body;
    let cmd = &polled["commands"][0];
    assert!(cmd["id"].is_string());
    assert_eq!(cmd["type"], "retry");
    assert_eq!(cmd["payload"]["stepNumber"], 2);
    assert_eq!(cmd["commandId"], cmd["id"]);
    assert_eq!(cmd["command"]["type"], "retry");

    // The remaining steps and the awaiting-input event.
    for ev in before_end.iter().skip(4) {
        if ev["type"] == "interaction:input-received" {
            break;
        }
        assert!(
            app.post("/api/events", ev.clone())
                .await
                .status
                .is_success()
        );
    }

    // input-inject: announce, then long-poll; the dashboard's input wakes it.
    let awaiting = app
        .post(&format!("/api/sessions/{SID}/awaiting"), json!({"promptType": "choice", "promptText": "Run the full test suite before review?", "quickResponses": ["yes", "no"]}))
        .await;
    assert!(awaiting.status.is_success());
    let poll = {
        let app = app.clone();
        tokio::spawn(async move {
            app.get(&format!("/api/sessions/{SID}/input?timeout=30000"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let sent = app
        .post(
            &format!("/api/sessions/{SID}/input"),
            json!({"input": "yes", "prompt": "Run the full test suite before review?"}),
        )
        .await;
    assert!(sent.body.get("error").is_none());
    let got = poll.await.unwrap().body;
    assert_eq!(got["available"], true);
    // The hook reads `input.input`, or `input` when it is a string.
    let answer = got["input"]["input"].as_str().or(got["input"].as_str());
    assert_eq!(answer, Some("yes"));

    // The rest of the session, then session-end completes it.
    let rest: Vec<&Value> = before_end
        .iter()
        .skip_while(|e| e["type"] != "interaction:input-received")
        .collect();
    for ev in rest {
        assert!(
            app.post("/api/events", ev.clone())
                .await
                .status
                .is_success()
        );
    }
    assert!(
        app.post("/api/events", ended.clone())
            .await
            .status
            .is_success()
    );

    // The dashboard's reads.
    let list = app.get("/api/sessions").await.body;
    let listed = &list["sessions"][0];
    assert_eq!(listed["id"], SID);
    assert_eq!(listed["status"], "completed");
    assert!(listed["endedAt"].is_string());
    let users = app.get("/api/users").await.body;
    assert_eq!(users["users"][0]["user"], "alice");
    let mine = app.get("/api/users/alice/sessions").await.body;
    assert_eq!(mine["sessions"][0]["id"], SID);
    let events = app.get(&format!("/api/events/{SID}")).await.body;
    assert_eq!(events["count"].as_u64().unwrap() as usize, fixture().len());
}
