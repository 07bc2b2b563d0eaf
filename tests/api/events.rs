use afw::config::Config;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, event};

#[tokio::test]
async fn an_event_for_an_unknown_session_creates_it_in_progress() {
    let app = TestApp::new();
    let res = app
        .post(
            "/api/events",
            event(
                "file:created",
                "hook-1",
                json!({"path": "/w/a.rs", "user": "alice"}),
            ),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    // The epoch is drawn for the new session: the same on the session and the event's answer.
    let epoch = res.body["epoch"].as_str().unwrap().to_owned();
    assert_eq!(epoch.len(), 9, "{}", res.body);
    assert_eq!(
        res.body,
        json!({"success": true, "sessionId": "hook-1", "eventId": "hook-1-1", "seq": 1, "epoch": epoch})
    );
    let s = app.get("/api/sessions/hook-1").await.body;
    assert_eq!(s["epoch"], epoch.as_str());
    assert_eq!(s["status"], "in_progress");
    assert_eq!(s["startedAt"], "2026-11-20T14:00:00.000Z");
    assert_eq!(s["eventCount"], 1);
}

#[tokio::test]
async fn events_are_kept_verbatim_with_a_server_seq() {
    let app = TestApp::new();
    let raw = r#"{"type":"step:completed","sessionId":"s","timestamp":"2026-11-20T14:01:35.515Z","custom":{"deep":[1,null]},"seq":999,"eventId":"e-1"}"#;
    let res = app
        .raw(
            axum::http::Method::POST,
            "/api/events",
            Some("application/json"),
            Some(raw.into()),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.body["eventId"], "e-1");
    assert_eq!(res.body["seq"], 1);
    let list = app.get("/api/events/s").await.body;
    let stored = &list["events"][0];
    assert_eq!(stored["custom"], json!({"deep": [1, null]}));
    assert_eq!(stored["seq"], 1, "the client's seq is replaced");
    assert_eq!(stored["eventId"], "e-1");
    assert_eq!(list["lastSeq"], 1);
}

#[tokio::test]
async fn unknown_event_type_is_a_400_listing_the_known_ones() {
    let app = TestApp::new();
    let res = app
        .post("/api/events", event("session:paused", "s", json!({})))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let known = res.body["knownTypes"].as_array().unwrap();
    assert_eq!(known.len(), 19);
    assert!(known.contains(&json!("interaction:awaiting-input")));
    assert!(
        res.body["error"]
            .as_str()
            .unwrap()
            .contains("session:paused")
    );
    assert_eq!(
        app.get("/api/sessions/s").await.status,
        StatusCode::NOT_FOUND,
        "nothing stored"
    );
}

#[tokio::test]
async fn events_missing_required_fields_are_rejected_with_details() {
    let app = TestApp::new();
    for (body, path) in [
        (json!({"sessionId": "s", "timestamp": 1}), "type"),
        (json!({"type": "file:created", "timestamp": 1}), "sessionId"),
        (
            json!({"type": "file:created", "sessionId": "s"}),
            "timestamp",
        ),
        (
            json!({"type": "file:created", "sessionId": "s", "timestamp": "noon"}),
            "timestamp",
        ),
        (
            json!({"type": "file:created", "sessionId": "a/b", "timestamp": 1}),
            "sessionId",
        ),
    ] {
        let res = app.post("/api/events", body.clone()).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(res.body["details"][0]["path"], path, "{}", res.body);
    }
    let res = app.post("/api/events", json!([1])).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn batch_stores_all_or_nothing_and_answers_in_order() {
    let app = TestApp::new();
    let res = app
        .post(
            "/api/events/batch",
            json!({"events": [
                event("file:created", "a", json!({})),
                event("file:created", "b", json!({})),
                event("file:modified", "a", json!({"eventId": "mine"})),
            ]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["success"], true);
    let results = res.body["results"].as_array().unwrap();
    assert_eq!(
        results
            .iter()
            .map(|r| (r["sessionId"].as_str().unwrap(), r["seq"].as_u64().unwrap()))
            .collect::<Vec<_>>(),
        [("a", 1), ("b", 1), ("a", 2)]
    );
    assert_eq!(results[2]["eventId"], "mine");

    let bad = app
        .post(
            "/api/events/batch",
            json!({"events": [event("file:created", "c", json!({})), event("nope", "c", json!({})), {"type": "file:created"}]}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.get("/api/sessions/c").await.status,
        StatusCode::NOT_FOUND,
        "nothing stored"
    );

    let too_many: Vec<Value> = (0..1001)
        .map(|_| event("file:created", "d", json!({})))
        .collect();
    let res = app
        .post("/api/events/batch", json!({"events": too_many}))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.post("/api/events/batch", json!({"events": []}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.post("/api/events/batch", json!({"evts": []}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn listing_supports_after_since_and_limit() {
    let app = TestApp::new();
    for minute in 0..5 {
        app.event(json!({"type": "file:created", "sessionId": "s", "timestamp": format!("2026-11-20T14:0{minute}:00.000Z"), "n": minute}))
            .await;
    }
    let seqs = |v: &Value| {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    let all = app.get("/api/events/s").await.body;
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5]);
    assert_eq!(all["count"], 5);
    assert_eq!(all["lastSeq"], 5);
    assert_eq!(seqs(&app.get("/api/events/s?after=3").await.body), [4, 5]);
    assert_eq!(
        seqs(&app.get("/api/events/s?after=1&limit=2").await.body),
        [2, 3]
    );
    assert_eq!(
        seqs(
            &app.get("/api/events/s?since=2026-11-20T14:03:00.000Z")
                .await
                .body
        ),
        [4, 5]
    );
    let empty = app.get("/api/events/never").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.body["count"], 0);
    assert_eq!(empty.body["lastSeq"], 0);
    for bad in [
        "after=-1",
        "after=x",
        "limit=0",
        "limit=10001",
        "since=yesterday",
        "sort=asc",
    ] {
        assert_eq!(
            app.get(&format!("/api/events/s?{bad}")).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn recent_returns_the_newest_events_within_the_window() {
    let app = TestApp::new();
    // The test clock starts at 14:00:00; events stamped in the future and past.
    for (i, ts) in [
        "2026-11-20T13:58:00.000Z",
        "2026-11-20T13:59:30.000Z",
        "2026-11-20T13:59:40.000Z",
        "2026-11-20T13:59:50.000Z",
    ]
    .iter()
    .enumerate()
    {
        app.event(json!({"type": "file:created", "sessionId": "s", "timestamp": ts, "n": i}))
            .await;
    }
    let res = app.get("/api/events/s/recent?seconds=60&limit=2").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["count"], 2);
    assert_eq!(res.body["events"][0]["n"], 2);
    assert_eq!(res.body["events"][1]["n"], 3);
    assert_eq!(res.body["cutoffTime"], "2026-11-20T13:59:00.000Z");
    let res = app.get("/api/events/s/recent").await;
    assert_eq!(res.body["count"], 3);
    for bad in [
        "limit=-1",
        "limit=0",
        "limit=1001",
        "seconds=-5",
        "seconds=abc",
        "limit=1.5",
    ] {
        let res = app.get(&format!("/api/events/s/recent?{bad}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(res.body["error"].is_string());
    }
}

#[tokio::test]
async fn the_oldest_events_are_trimmed_at_the_cap() {
    let app = TestApp::with_config(Config {
        max_events_per_session: 3,
        ..Config::default()
    });
    for _ in 0..5 {
        app.event(event("file:created", "s", json!({}))).await;
    }
    let list = app.get("/api/events/s").await.body;
    let seqs: Vec<u64> = list["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(app.get("/api/sessions/s").await.body["eventCount"], 5);
}

#[tokio::test]
async fn terminal_output_is_stored_as_events_and_buffered() {
    let app = TestApp::new();
    for i in 0..3 {
        let res = app
            .post("/api/terminal/s/output", json!({"output": format!("line {i}\n"), "stream": "stdout", "stepNumber": 1, "action": "code"}))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert_eq!(res.body["success"], true);
    }
    let res = app
        .post(
            "/api/terminal/s/output",
            json!({"output": "err", "stream": "stdin"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let buf = app.get("/api/terminal/s/buffer?limit=2").await.body;
    assert_eq!(buf["returned"], 2);
    assert_eq!(buf["truncated"], true);
    assert_eq!(buf["totalSize"], 21);
    assert_eq!(buf["buffer"][1]["output"], "line 2\n");
    let events = app.get("/api/events/s").await.body;
    assert_eq!(events["events"][0]["type"], "terminal:output");
    assert_eq!(
        app.get("/api/terminal/s/buffer?limit=0").await.status,
        StatusCode::BAD_REQUEST
    );
}
