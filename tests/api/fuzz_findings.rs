//! What the fuzzer (scripts/fuzz-api.sh) found, held as regressions on either backend: each
//! was a schema-valid request afw refused or a 500 it answered.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;

pub async fn fuzz_findings_hold(app: &TestApp) {
    // A whole number written as a float is the same number (JSON Schema's `integer`).
    for (path, body) in [
        (
            "/api/events",
            json!({"type": "step:spawned", "sessionId": "fz1", "timestamp": 2651.0, "stepNumber": 143.0}),
        ),
        (
            "/api/terminal/fz1/output",
            json!({"output": "ok", "stepNumber": 7.0}),
        ),
        (
            "/api/sessions/fz1/commands",
            json!({"type": "retry", "payload": {"stepNumber": 199.0}}),
        ),
    ] {
        let res = app.post(path, body).await;
        assert!(
            res.status.is_success(),
            "{path}: {} {}",
            res.status,
            res.body
        );
    }
    // Read back: an event stored with a float timestamp was a 500 in Redis mode.
    let res = app.get("/api/events/fz1").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["events"][0]["timestamp"], 2651.0);
    let res = app.get("/api/events/fz1/recent?seconds=604800").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    // The float stepNumber drove the chain like an integer one.
    let chain_step = app.get("/api/sessions/fz1").await.body;
    assert_eq!(chain_step["id"], "fz1");
    // Epoch milliseconds past the end of year 9999 are refused, not stored.
    let res = app
        .post(
            "/api/events",
            json!({"type": "file:created", "sessionId": "fz1", "timestamp": 1020776827209102140377137152u128 as f64}),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.body["details"][0]["path"], "timestamp");
    // A JSON `null` body where the body is optional means "no body".
    for path in ["/api/sessions/fz1/awaiting", "/api/commands/nope/ack"] {
        let res = app
            .raw(
                Method::POST,
                path,
                Some("application/json"),
                Some("null".into()),
            )
            .await;
        assert_ne!(res.status, StatusCode::BAD_REQUEST, "{path}: {}", res.body);
    }
    // A `terminal:output` event without its output stays in the history, not in the buffer.
    app.post(
        "/api/events",
        json!({"type": "terminal:output", "sessionId": "fz1", "timestamp": 5000}),
    )
    .await;
    let res = app.get("/api/terminal/fz1/buffer").await;
    assert_eq!(res.status, StatusCode::OK);
    let buffer = res.body["buffer"].as_array().unwrap();
    assert_eq!(buffer.len(), 1, "{}", res.body);
    assert_eq!(buffer[0]["output"], "ok");
    assert_eq!(buffer[0]["stream"], "stdout");
    // `after` beyond what a JavaScript client can hold is a 400.
    let res = app.get("/api/events/fz1?after=9223372036854775808").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = app.get("/api/events/fz1?after=9007199254740991").await;
    assert_eq!(res.status, StatusCode::OK);
    // Floats survive a round trip exactly (input payloads are parsed, not kept verbatim).
    let res = app
        .post(
            "/api/sessions/fz1/input",
            json!({"input": [1038336.9216034255]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let res = app.get("/api/sessions/fz1/input").await;
    assert_eq!(
        res.body["input"]["input"][0].to_string(),
        "1038336.9216034255"
    );
    // `/:` is a POSIX path (it was read as a Windows drive because of its colon).
    let res = app
        .post("/api/sessions", json!({"cwd": "/:", "id": "fz-cwd"}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    // History: a date is any real RFC 3339 full-date, earlier than any archive included.
    if app.state.archiver().is_some() {
        let res = app.get("/api/history/sessions/0001-01-01").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert_eq!(res.body["total"], 0);
    }
}
