use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;

#[tokio::test]
async fn queued_commands_carry_every_field_the_three_readers_use() {
    let app = TestApp::new();
    app.start_session("s").await;
    let res = app
        .post(
            "/api/sessions/s/commands",
            json!({"type": "pause", "payload": {"graceful": true, "reason": "look"}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["success"], true);
    let id = res.body["commandId"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cmd-"));
    let cmd = &res.body["command"];
    assert_eq!(cmd["id"], id.as_str());
    assert_eq!(cmd["commandId"], id.as_str());
    assert_eq!(cmd["type"], "pause");
    assert_eq!(cmd["status"], "pending");
    assert_eq!(cmd["payload"]["graceful"], true);
    assert_eq!(
        cmd["command"],
        json!({"type": "pause", "payload": {"graceful": true, "reason": "look"}})
    );
    assert!(cmd["issuedAt"].is_string());
}

#[tokio::test]
async fn command_validation() {
    let app = TestApp::new();
    app.start_session("s").await;
    for body in [
        json!({"type": "retry"}),
        json!({"type": "skip", "payload": {"stepNumber": 0}}),
        json!({"type": "skip", "payload": {"stepNumber": "2"}}),
        json!({"type": "abort", "payload": {}}),
        json!({"type": "abort", "payload": {"reason": "  "}}),
        json!({"type": "explode"}),
        json!({"type": "pause", "payload": [1]}),
        json!({}),
    ] {
        let res = app.post("/api/sessions/s/commands", body.clone()).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}: {}", res.body);
    }
    for body in [
        json!({"type": "retry", "payload": {"stepNumber": 2}}),
        json!({"type": "skip", "payload": {"stepNumber": 1}}),
        json!({"type": "abort", "payload": {"reason": "stop"}}),
        json!({"type": "resume", "payload": {"fromCurrent": true}}),
        json!({"type": "cancel"}),
    ] {
        let res = app.post("/api/sessions/s/commands", body.clone()).await;
        assert_eq!(res.status, StatusCode::CREATED, "{body}: {}", res.body);
    }
    let res = app
        .post("/api/sessions/none/commands", json!({"type": "pause"}))
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_claim_hands_out_pending_commands_once_on_both_path_families() {
    let app = TestApp::new();
    app.start_session("s").await;
    app.post("/api/sessions/s/commands", json!({"type": "pause"}))
        .await;
    app.post(
        "/api/commands/s/commands",
        json!({"type": "cancel", "payload": {"reason": "x"}}),
    )
    .await;
    let first = app.get("/api/sessions/s/commands").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["count"], 2);
    let cmds = first.body["commands"].as_array().unwrap();
    assert_eq!(cmds[0]["type"], "pause");
    assert_eq!(cmds[1]["type"], "cancel");
    // Shown as they were when claimed, so the hook's `status == "pending"` filter works.
    assert!(cmds.iter().all(|c| c["status"] == "pending"));
    let again = app.get("/api/commands/s/commands").await;
    assert_eq!(again.body["count"], 0);
    let id = cmds[0]["id"].as_str().unwrap();
    let record = app.get(&format!("/api/commands/{id}")).await;
    assert_eq!(record.status, StatusCode::OK);
    assert_eq!(record.body["status"], "delivered");
    assert!(record.body["deliveredAt"].is_string());
    // Polling a session that does not exist is not an error for the hooks.
    let none = app.get("/api/sessions/unknown/commands").await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(none.body["commands"], json!([]));
}

#[tokio::test]
async fn concurrent_claims_never_hand_out_a_command_twice() {
    let app = std::sync::Arc::new(TestApp::new());
    app.start_session("s").await;
    let mut ids = BTreeSet::new();
    for _ in 0..50 {
        let res = app
            .post("/api/sessions/s/commands", json!({"type": "pause"}))
            .await;
        ids.insert(res.body["commandId"].as_str().unwrap().to_owned());
    }
    let mut polls = Vec::new();
    for _ in 0..8 {
        let app = app.clone();
        polls.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..5 {
                let res = app.get("/api/sessions/s/commands").await;
                for c in res.body["commands"].as_array().unwrap() {
                    got.push(c["id"].as_str().unwrap().to_owned());
                }
                tokio::task::yield_now().await;
            }
            got
        }));
    }
    let mut claimed = Vec::new();
    for p in polls {
        claimed.extend(p.await.unwrap());
    }
    assert_eq!(claimed.len(), 50, "every command claimed exactly once");
    assert_eq!(claimed.into_iter().collect::<BTreeSet<_>>(), ids);
}

#[tokio::test]
async fn ack_records_the_outcome() {
    let app = TestApp::new();
    app.start_session("s").await;
    let id = app.queue_command("s", json!({"type": "pause"})).await;
    app.get("/api/sessions/s/commands").await;
    let res = app
        .post(
            &format!("/api/commands/{id}/ack"),
            json!({"result": "paused"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["acknowledged"], true);
    assert_eq!(res.body["commandId"], id.as_str());
    let record = app.get(&format!("/api/commands/{id}")).await.body;
    assert_eq!(record["status"], "acked");
    assert_eq!(record["result"], "paused");
    // An error makes it failed; an empty body is accepted.
    let id2 = app.queue_command("s", json!({"type": "resume"})).await;
    app.post(
        &format!("/api/commands/{id2}/ack"),
        json!({"error": "not paused"}),
    )
    .await;
    assert_eq!(
        app.get(&format!("/api/commands/{id2}")).await.body["status"],
        "failed"
    );
    let empty = app
        .raw(
            axum::http::Method::POST,
            &format!("/api/commands/{id}/ack"),
            None,
            None,
        )
        .await;
    assert_eq!(empty.status, StatusCode::OK);
    let missing = app.post("/api/commands/cmd-0-nope/ack", json!({})).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["commandId"], "cmd-0-nope");
    assert_eq!(
        app.get("/api/commands/cmd-0-nope").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(start_paused = true)]
async fn lease_mode_redelivers_unacknowledged_commands() {
    let app = TestApp::new();
    app.start_session("s").await;
    app.post("/api/sessions/s/commands", json!({"type": "pause"}))
        .await;
    let ids = |v: &Value| {
        v["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].clone())
            .collect::<Vec<_>>()
    };
    let first = app.get("/api/sessions/s/commands?lease=1000").await.body;
    assert_eq!(ids(&first).len(), 1);
    assert!(
        ids(&app.get("/api/sessions/s/commands?lease=1000").await.body).is_empty(),
        "leased"
    );
    tokio::time::sleep(Duration::from_millis(1001)).await;
    let second = app.get("/api/sessions/s/commands?lease=1000").await.body;
    assert_eq!(ids(&second), ids(&first), "redelivered after the lease");
    assert_eq!(second["commands"][0]["status"], "pending");
    let id = first["commands"][0]["id"].as_str().unwrap();
    app.post(&format!("/api/commands/{id}/ack"), json!({"result": "ok"}))
        .await;
    tokio::time::sleep(Duration::from_millis(1001)).await;
    assert!(
        ids(&app.get("/api/sessions/s/commands?lease=1000").await.body).is_empty(),
        "acked stays done"
    );
    for bad in ["lease=0", "lease=-1", "lease=600001", "lease=soon"] {
        assert_eq!(
            app.get(&format!("/api/sessions/s/commands?{bad}"))
                .await
                .status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

/// The `Idempotency-Key` header names the command; a retry with it queues nothing, and a
/// body `id` that disagrees with the header is a 400.
#[tokio::test]
async fn an_idempotency_key_makes_a_retried_command_a_duplicate() {
    let app = TestApp::new();
    app.start_session("s").await;
    let key = [("idempotency-key", "pause-7")];
    let first = app
        .post_with("/api/sessions/s/commands", &key, json!({"type": "pause"}))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["commandId"], "pause-7");
    let retry = app
        .post_with("/api/sessions/s/commands", &key, json!({"type": "pause"}))
        .await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.body);
    assert_eq!(retry.body["duplicate"], true);
    assert_eq!(retry.body["command"]["status"], "pending");
    let polled = app.get("/api/sessions/s/commands").await.body;
    assert_eq!(polled["count"], 1, "queued once: {polled}");
    let mismatch = app
        .post_with(
            "/api/sessions/s/commands",
            &key,
            json!({"type": "pause", "id": "other"}),
        )
        .await;
    assert_eq!(
        mismatch.status,
        StatusCode::BAD_REQUEST,
        "{}",
        mismatch.body
    );
}
