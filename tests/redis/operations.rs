//! `/metrics` in Redis mode, on a real redis-server: the link's and the bridge's families,
//! and Redis's own figures read with `INFO` on the timer.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{REDIS_FAMILIES, event, has_families, sample, scrape};
use crate::server::RedisServer;
use crate::shared::redis_instance;

#[tokio::test]
async fn redis_mode_metrics_cover_the_link_the_bridge_and_redis_itself() {
    let redis = RedisServer::start();
    let app = redis_instance(&redis).await;
    let (_, before) = scrape(&app, None).await;
    let mut ws = app.ws().await;
    ws.subscribe("rm1", None).await;
    let ev = event(
        "session:started",
        "rm1",
        json!({"cwd": "/w", "eventId": "e1"}),
    );
    app.event(ev.clone()).await;
    app.post("/api/events", ev).await;
    ws.event_seqs(1).await;
    futures_util::SinkExt::close(&mut ws.stream).await.unwrap();
    app.post("/api/sessions/rm1/input", json!({"input": "y"}))
        .await;
    app.get("/api/sessions/rm1/commands").await;
    // Redis's figures come from the INFO timer (first read at start, then every 15 s), not
    // from the scrape. On a loaded machine the first read can come before the bridge has
    // subscribed (no channel yet): then the next one, 15 s later, counts it.
    let mut text = String::new();
    for _ in 0..1_000 {
        text = scrape(&app, None).await.1;
        if text.contains("afw_redis_used_memory_bytes")
            && sample(&text, "afw_ws_disconnects_total", "") >= 1.0
            && sample(&text, "afw_redis_pubsub_channels", "") >= 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    has_families(&text, REDIS_FAMILIES);
    let moved = |name: &str, labels: &str| {
        let (a, b) = (sample(&before, name, labels), sample(&text, name, labels));
        assert!(b > a, "{name}{{{labels}}} did not move: {a} -> {b}");
    };
    moved(
        "afw_redis_command_duration_seconds_count",
        r#"command="script:commit""#,
    );
    moved(
        "afw_redis_command_duration_seconds_count",
        r#"command="script:push_input""#,
    );
    // The event's message and the notices: published by the scripts, heard back.
    moved("afw_pubsub_messages_total", r#"direction="out""#);
    moved("afw_pubsub_messages_total", r#"direction="in""#);
    assert!(sample(&text, "afw_redis_used_memory_bytes", "") > 100_000.0);
    assert!(sample(&text, "afw_redis_connected_clients", "") >= 2.0);
    assert!(sample(&text, "afw_redis_pubsub_channels", "") >= 1.0);

    // Redis goes away: the errors are counted by kind, and the last figures are kept.
    let mut redis = redis;
    redis.kill();
    let res = app
        .post(
            "/api/events",
            event(
                "step:spawned",
                "rm1",
                json!({"chainId": "c", "stepNumber": 1}),
            ),
        )
        .await;
    assert_eq!(res.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
    let (_, down) = scrape(&app, None).await;
    assert!(sample(&down, "afw_redis_errors_total", "") >= 1.0, "{down}");
    assert!(sample(&down, "afw_http_refused_total", r#"reason="unavailable""#) >= 1.0);
    assert!(down.contains("afw_redis_used_memory_bytes"));
}

#[tokio::test]
async fn what_the_fuzzer_found_stays_fixed_in_redis_mode() {
    let redis = RedisServer::start();
    let app = redis_instance(&redis).await;
    crate::fuzz_findings::fuzz_findings_hold(&app).await;
}
