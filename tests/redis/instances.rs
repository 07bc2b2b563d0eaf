//! Several instances sharing one Redis behave as one service.

use std::sync::Arc;
use std::time::Duration;

use afw::config::Config;
use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, event, fixture};
use crate::server::RedisServer;
use crate::shared::{redis_instance, wait_healthy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_sessions_commands_and_input() {
    let redis = RedisServer::start();
    let (a, b, c) = (
        redis_instance(&redis).await,
        redis_instance(&redis).await,
        redis_instance(&redis).await,
    );
    a.event(event(
        "session:started",
        "s",
        json!({"cwd": "/w", "user": "alice"}),
    ))
    .await;
    b.event(event("file:created", "s", json!({}))).await;
    assert_eq!(
        c.event(event("file:created", "s", json!({}))).await,
        3,
        "one sequence across instances"
    );
    assert_eq!(c.get("/api/sessions/s").await.body["eventCount"], 3);
    assert_eq!(b.get("/api/events/s").await.body["count"], 3);
    assert_eq!(a.get("/api/users").await.body["users"][0]["user"], "alice");

    let id = a.queue_command("s", json!({"type": "pause"})).await;
    let claims = [
        b.get("/api/sessions/s/commands").await.body,
        c.get("/api/sessions/s/commands").await.body,
    ];
    let total: u64 = claims.iter().map(|c| c["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 1, "claimed once across instances");
    assert_eq!(claims[0]["commands"][0]["id"], id.as_str());
    assert_eq!(
        c.post(&format!("/api/commands/{id}/ack"), json!({}))
            .await
            .body["acknowledged"],
        true
    );
    assert_eq!(
        a.get(&format!("/api/commands/{id}")).await.body["status"],
        "acked"
    );

    b.post("/api/sessions/s/input", json!({"input": "from b"}))
        .await;
    assert_eq!(
        c.get("/api/sessions/s/input").await.body["input"]["input"],
        "from b"
    );
    assert_eq!(
        a.get("/api/sessions/s/input").await.body["available"],
        false
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_two_instances_get_distinct_gapless_seqs() {
    let redis = RedisServer::start();
    let a = Arc::new(redis_instance(&redis).await);
    let b = Arc::new(redis_instance(&redis).await);
    let mut writers = Vec::new();
    for app in [a.clone(), b.clone(), a.clone(), b.clone()] {
        writers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for _ in 0..25 {
                seqs.push(app.event(event("file:modified", "hot", json!({}))).await);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=100).collect::<Vec<_>>());
    let session = a.get("/api/sessions/hot").await.body;
    assert_eq!(session["eventCount"], 100);
    let stored: Vec<u64> = b.get("/api/events/hot").await.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(stored, (1..=100).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_posted_anywhere_reach_every_subscriber_exactly_once_in_order() {
    let redis = RedisServer::start();
    let a = Arc::new(redis_instance(&redis).await);
    let b = Arc::new(redis_instance(&redis).await);
    let mut on_a = a.ws().await;
    let mut on_b = b.ws().await;
    on_a.subscribe("s", None).await;
    on_b.subscribe("s", None).await;
    let mut writers = Vec::new();
    for app in [a.clone(), b.clone()] {
        writers.push(tokio::spawn(async move {
            for _ in 0..30 {
                app.event(event("file:created", "s", json!({}))).await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let expected: Vec<u64> = (1..=60).collect();
    assert_eq!(on_a.event_seqs(60).await, expected);
    assert_eq!(on_b.event_seqs(60).await, expected);
    on_a.expect_silence(Duration::from_millis(300)).await;
    on_b.expect_silence(Duration::from_millis(100)).await;
    // Notices cross instances too.
    a.queue_command("s", json!({"type": "pause"})).await;
    assert_eq!(on_b.next_json().await["type"], "command:queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_on_one_instance_wakes_when_input_arrives_on_another() {
    let redis = RedisServer::start();
    let a = Arc::new(redis_instance(&redis).await);
    let b = redis_instance(&redis).await;
    a.start_session("s").await;
    let poll = {
        let a = a.clone();
        tokio::spawn(async move { a.get("/api/sessions/s/input?timeout=20000").await.body })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = tokio::time::Instant::now();
    b.post("/api/sessions/s/input", json!({"input": "yes"}))
        .await;
    let got = poll.await.unwrap();
    assert_eq!(got["input"]["input"], "yes");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "woken by the Pub/Sub notice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hooks_loop_runs_across_two_instances() {
    let redis = RedisServer::start();
    let hook = Arc::new(redis_instance(&redis).await);
    let dashboard = redis_instance(&redis).await;
    let events = fixture();
    let sid = "7f3c2a1e-5b9d-4e8f-a6c2-1d0e9b8a7c65";
    for ev in &events[..4] {
        assert!(
            hook.post("/api/events", ev.clone())
                .await
                .status
                .is_success()
        );
    }
    dashboard
        .queue_command(sid, json!({"type": "pause", "payload": {"graceful": true}}))
        .await;
    let polled = hook
        .get(&format!("/api/sessions/{sid}/commands"))
        .await
        .body;
    assert!(
        polled["commands"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "pause" && c["status"] == "pending")
    );
    assert!(
        hook.post(
            &format!("/api/sessions/{sid}/awaiting"),
            json!({"promptText": "Go?"})
        )
        .await
        .status
        .is_success()
    );
    let poll = {
        let hook = hook.clone();
        tokio::spawn(async move {
            hook.get(&format!("/api/sessions/{sid}/input?timeout=30000"))
                .await
                .body
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = dashboard
        .post(
            &format!("/api/sessions/{sid}/input"),
            json!({"input": "yes"}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED);
    assert_eq!(poll.await.unwrap()["input"]["input"], "yes");
    for ev in &events[4..] {
        assert!(
            hook.post("/api/events", ev.clone())
                .await
                .status
                .is_success()
        );
    }
    let listed = dashboard.get("/api/sessions").await.body;
    assert_eq!(listed["sessions"][0]["id"], sid);
    assert_eq!(listed["sessions"][0]["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_follows_the_layout_and_has_a_ttl() {
    let redis = RedisServer::start();
    let app = redis_instance(&redis).await;
    for ev in fixture() {
        app.event(ev).await;
    }
    let sid = "7f3c2a1e-5b9d-4e8f-a6c2-1d0e9b8a7c65";
    // A retry-safe event (with an eventId) adds the id set.
    app.event(crate::helpers::event(
        "file:created",
        sid,
        json!({"eventId": "layout-1"}),
    ))
    .await;
    let id = app.queue_command(sid, json!({"type": "pause"})).await;
    app.get(&format!("/api/sessions/{sid}/commands?lease=60000"))
        .await;
    app.queue_command(sid, json!({"type": "resume"})).await;
    app.post(&format!("/api/sessions/{sid}/input"), json!({"input": "x"}))
        .await;
    let chain = format!("{sid}-1763647444148");
    let expected: Vec<String> = [
        format!("afw:bytes:{sid}"),
        format!("afw:chain:{chain}"),
        format!("afw:chains:{sid}"),
        format!("afw:cmdids:{sid}"),
        format!("afw:command:{id}"),
        format!("afw:commands:{sid}"),
        format!("afw:epoch:{sid}"),
        format!("afw:eventids:{sid}"),
        format!("afw:events:{sid}"),
        // Written by /health: PING alone answers while Redis refuses writes.
        format!("afw:health:{}", app.state.instance_id()),
        "afw:index:sessions".to_owned(),
        // The listing indexes: the session left in_progress's when it completed.
        "afw:index:status:completed".to_owned(),
        "afw:index:user:alice".to_owned(),
        "afw:index:users".to_owned(),
        format!("afw:input:{sid}"),
        format!("afw:leases:{sid}"),
        format!("afw:meta:{sid}"),
        format!("afw:seq:{sid}"),
        format!("afw:sessions:{sid}"),
    ]
    .into_iter()
    .collect();
    let keys: Vec<String> = redis
        .keys("afw:*")
        .into_iter()
        .filter(|k| !k.starts_with("afw:command:") || k.ends_with(&id))
        .collect();
    assert_eq!(keys, expected);
    for key in redis.keys("afw:*") {
        let ttl: i64 = redis.cli(&["PTTL", &key]).trim().parse().unwrap();
        let queue = ["commands:", "input:", "leases:", "cmdids:", "command:"]
            .iter()
            .any(|q| key.contains(q));
        let max = if queue { 300_000 } else { 86_400_000 };
        assert!(ttl > 0 && ttl <= max, "{key} has TTL {ttl}");
    }
    assert_eq!(
        redis.cli(&["TYPE", &format!("afw:sessions:{sid}")]).trim(),
        "string"
    );
    assert_eq!(
        redis.cli(&["TYPE", &format!("afw:events:{sid}")]).trim(),
        "list"
    );
    let first: serde_json::Value = serde_json::from_str(
        redis
            .cli(&["LINDEX", &format!("afw:events:{sid}"), "0"])
            .trim(),
    )
    .unwrap();
    assert_eq!(
        (first["type"].as_str(), first["seq"].as_u64()),
        (Some("session:started"), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_url_password_db_and_prefix_are_honoured() {
    let redis = RedisServer::start_with_password("s3cret");
    let app = TestApp::serve(Config {
        redis_url: Some(format!("{}/3", redis.url())),
        redis_prefix: "team1:".into(),
        ..Config::default()
    })
    .await;
    wait_healthy(&app).await;
    app.event(event("file:created", "s", json!({}))).await;
    assert_eq!(
        redis.cli(&["-n", "3", "EXISTS", "team1:sessions:s"]).trim(),
        "1"
    );
    assert_eq!(redis.cli(&["-n", "0", "DBSIZE"]).trim(), "0");
    let wrong = TestApp::serve(Config {
        redis_url: Some(format!("redis://:wrong@127.0.0.1:{}/3", redis.port)),
        ..Config::default()
    })
    .await;
    let res = wrong
        .post("/api/events", event("file:created", "s", json!({})))
        .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !res.body["error"].as_str().unwrap().contains("WRONGPASS"),
        "no Redis internals leak"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_urls_connect_over_verified_tls() {
    let (redis, ca) = RedisServer::start_with_tls();
    let app = TestApp::serve(Config {
        redis_url: Some(redis.url()),
        redis_ca_file: Some(ca),
        ..Config::default()
    })
    .await;
    wait_healthy(&app).await;
    let mut ws = app.ws().await;
    ws.subscribe("s", None).await;
    app.event(event("session:started", "s", json!({"cwd": "/w"})))
        .await;
    assert_eq!(ws.event_seqs(1).await, [1], "Pub/Sub over TLS too");
    assert_eq!(redis.cli(&["EXISTS", "afw:sessions:s"]).trim(), "1");
    // Without the CA, the server's certificate is not trusted: no connection, 503s.
    let untrusting = TestApp::serve(Config {
        redis_url: Some(redis.url()),
        ..Config::default()
    })
    .await;
    let res = untrusting
        .post("/api/events", event("file:created", "s", json!({})))
        .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_stored_command_status_is_an_error_not_pending() {
    let redis = RedisServer::start();
    let app = redis_instance(&redis).await;
    app.start_session("s").await;
    let id = app.queue_command("s", json!({"type": "pause"})).await;
    redis.cli(&["HSET", &format!("afw:command:{id}"), "status", "weird"]);
    let res = app.get(&format!("/api/commands/{id}")).await;
    assert_eq!(res.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        res.body["error"], "Internal server error",
        "no stored text leaks"
    );
}
