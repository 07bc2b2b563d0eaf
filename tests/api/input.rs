use std::time::Duration;

use afw::config::Config;
use axum::http::StatusCode;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::helpers::TestApp;

#[tokio::test]
async fn input_pops_one_item_at_a_time_in_order() {
    let app = TestApp::new();
    app.start_session("s").await;
    app.post("/api/sessions/s/awaiting", json!({"promptText": "?"}))
        .await;
    for text in ["first", "second"] {
        let res = app
            .post(
                "/api/sessions/s/input",
                json!({"input": text, "prompt": "?"}),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        assert_eq!(res.body["success"], true);
        assert_eq!(res.body["inputQueued"], true);
    }
    let one = app.get("/api/sessions/s/input").await.body;
    assert_eq!(one["available"], true);
    assert_eq!(one["sessionId"], "s");
    assert_eq!(one["input"]["input"], "first");
    assert_eq!(one["input"]["prompt"], "?");
    assert!(one["input"]["id"].is_string());
    assert_eq!(
        app.get("/api/sessions/s").await.body["conversationState"],
        "idle"
    );
    assert_eq!(
        app.get("/api/sessions/s/input").await.body["input"]["input"],
        "second"
    );
    let none = app.get("/api/sessions/s/input").await.body;
    assert_eq!(none, json!({"available": false, "sessionId": "s"}));
}

#[tokio::test]
async fn input_validation_and_the_queue_cap() {
    let app = TestApp::with_config(Config {
        max_input_queue: 2,
        ..Config::default()
    });
    app.start_session("s").await;
    assert_eq!(
        app.post("/api/sessions/s/input", json!({})).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.post("/api/sessions/s/input", json!({"input": null}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.post("/api/sessions/none/input", json!({"input": "x"}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post("/api/sessions/s/input", json!({"input": {"choice": 1}}))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.post("/api/sessions/s/input", json!({"input": "b"}))
            .await
            .status,
        StatusCode::CREATED
    );
    let full = app
        .post("/api/sessions/s/input", json!({"input": "c"}))
        .await;
    assert_eq!(full.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(full.headers["retry-after"], "1");
    assert!(full.body["error"].as_str().unwrap().contains("full"));
    // Nothing was dropped: both queued items come out.
    assert_eq!(
        app.get("/api/sessions/s/input").await.body["input"]["input"],
        json!({"choice": 1})
    );
    assert_eq!(
        app.get("/api/sessions/s/input").await.body["input"]["input"],
        "b"
    );
    for bad in ["timeout=60001", "timeout=-1", "timeout=abc"] {
        assert_eq!(
            app.get(&format!("/api/sessions/s/input?{bad}"))
                .await
                .status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_times_out_with_timed_out() {
    let app = TestApp::new();
    app.start_session("s").await;
    let started = tokio::time::Instant::now();
    let res = app.get("/api/sessions/s/input?timeout=30000").await;
    assert_eq!(
        res.body,
        json!({"available": false, "sessionId": "s", "timedOut": true})
    );
    assert!(started.elapsed() >= Duration::from_millis(30000));
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_wakes_as_soon_as_input_arrives() {
    let app = std::sync::Arc::new(TestApp::new());
    app.start_session("s").await;
    let poller = {
        let app = app.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let res = app.get("/api/sessions/s/input?timeout=30000").await;
            (res.body, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(1234)).await;
    app.post("/api/sessions/s/input", json!({"input": "go"}))
        .await;
    let (body, waited) = poller.await.unwrap();
    assert_eq!(body["available"], true);
    assert_eq!(body["input"]["input"], "go");
    assert_eq!(
        waited,
        Duration::from_millis(1234),
        "woken at once, not by polling"
    );
}

#[tokio::test]
async fn a_long_poll_whose_client_left_consumes_nothing() {
    let app = TestApp::serve(Config::default()).await;
    app.start_session("s").await;
    let addr = app.addr.unwrap();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /api/sessions/s/input?timeout=20000 HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(conn);
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.post(
        "/api/sessions/s/input",
        json!({"input": "for whoever asks next"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = app.get("/api/sessions/s/input").await.body;
    assert_eq!(
        res["available"], true,
        "the item was consumed by a poll nobody was waiting on"
    );
    assert_eq!(res["input"]["input"], "for whoever asks next");
}
