//! Redis goes away and comes back: fast 503s, no false 2xx, automatic recovery,
//! gap-free delivery, and persistence when Redis keeps its data.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, event, event_seq};
use crate::server::RedisServer;
use crate::shared::{redis_instance, wait_healthy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_writes_fail_fast_and_everything_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let app = redis_instance(&redis).await;
    let mut ws = app.ws().await;
    ws.subscribe("s", None).await;
    for _ in 0..5 {
        app.event(event("file:created", "s", json!({}))).await;
    }
    assert_eq!(ws.event_seqs(5).await, [1, 2, 3, 4, 5]);
    redis.kill();

    for _ in 0..5 {
        let started = tokio::time::Instant::now();
        let res = app
            .post("/api/events", event("file:created", "s", json!({})))
            .await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
        assert_eq!(res.headers["retry-after"], "1");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "answered in {:?}",
            started.elapsed()
        );
    }
    // Reads of Redis data are 503 too, not a false 404 or an empty list.
    assert_eq!(
        app.get("/api/sessions/s").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        app.get("/api/sessions").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        app.get("/api/events/s").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let health = app.get("/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "degraded");
    assert_eq!(health.body["redis"]["connected"], false);
    assert_eq!(
        app.get("/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    redis.restart();
    let mut recovered = false;
    for _ in 0..100 {
        if app
            .post(
                "/api/events",
                event("session:started", "s", json!({"cwd": "/w"})),
            )
            .await
            .status
            == StatusCode::CREATED
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "writes work again without a restart");
    wait_healthy(&app).await;
    assert_eq!(app.get("/ready").await.status, StatusCode::OK);
    // Redis lost its data (no persistence): the session started over at seq 1, below what
    // the still-connected WebSocket client has seen. It is told to reload
    // (`recovered: false`), and live delivery goes on from the new sequence.
    let reset = loop {
        let f = ws.next_json().await;
        if f["type"] == "subscription_confirmed" {
            break f;
        }
    };
    assert_eq!(reset["payload"]["recovered"], false, "{reset}");
    // From the reset's cursor on, every event arrives once, in order.
    let cursor = reset["payload"]["lastSeq"].as_u64().unwrap();
    let seq = app.event(event("file:created", "s", json!({}))).await;
    let mut seen = Vec::new();
    while seen.last() != Some(&seq) {
        let f = ws.next_json().await;
        if let Some(seq) = event_seq(&f) {
            seen.push(seq);
        }
    }
    assert_eq!(seen, (cursor + 1..=seq).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_miss_nothing_when_the_pubsub_link_drops() {
    let redis = RedisServer::start();
    let a = Arc::new(redis_instance(&redis).await);
    let b = redis_instance(&redis).await;
    let mut ws = b.ws().await;
    ws.subscribe("s", None).await;
    let writer = {
        let a = a.clone();
        tokio::spawn(async move {
            for _ in 0..60 {
                a.event(event("file:created", "s", json!({}))).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Cut every subscriber connection mid-stream: messages published meanwhile are lost
    // by Pub/Sub and must be recovered from the event list.
    tokio::time::sleep(Duration::from_millis(60)).await;
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    tokio::time::sleep(Duration::from_millis(60)).await;
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    writer.await.unwrap();
    assert_eq!(ws.event_seqs(60).await, (1..=60).collect::<Vec<_>>());
    ws.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_aof_sessions_survive_a_redis_crash() {
    let mut redis = RedisServer::start_with_aof();
    let app = redis_instance(&redis).await;
    app.event(event(
        "session:started",
        "s",
        json!({"cwd": "/w", "user": "alice"}),
    ))
    .await;
    app.event(event("file:created", "s", json!({}))).await;
    app.queue_command("s", json!({"type": "pause"})).await;
    redis.kill();
    redis.restart();
    let mut session = None;
    for _ in 0..100 {
        let res = app.get("/api/sessions/s").await;
        if res.status == StatusCode::OK {
            session = Some(res.body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let session = session.expect("the session is back");
    assert_eq!(session["eventCount"], 2);
    assert_eq!(app.get("/api/events/s").await.body["lastSeq"], 2);
    assert_eq!(app.get("/api/sessions/s/commands").await.body["count"], 1);
    assert_eq!(
        app.event(event("file:created", "s", json!({}))).await,
        3,
        "the sequence continues"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_load_never_acknowledges_a_write_it_did_not_store() {
    let mut redis = RedisServer::start_with_aof();
    let app = Arc::new(redis_instance(&redis).await);
    app.start_session("load").await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (app, stop) = (app.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut refused = 0;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = w * 1_000_000 + n;
                let res = app
                    .post(
                        "/api/events",
                        event("file:modified", "load", json!({"n": id})),
                    )
                    .await;
                match res.status {
                    StatusCode::CREATED => acked.push(id),
                    StatusCode::SERVICE_UNAVAILABLE => refused += 1,
                    other => panic!("unexpected {other}: {}", res.body),
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (acked, refused)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut acked, mut refused) = (Vec::new(), 0);
    for w in writers {
        let (a, r) = w.await.unwrap();
        acked.extend(a);
        refused += r;
    }
    assert!(refused > 0, "the outage was seen");
    let stored = app.get("/api/events/load?limit=10000").await;
    assert_eq!(stored.status, StatusCode::OK);
    let present: std::collections::BTreeSet<u64> = stored.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["n"].as_u64())
        .collect();
    let missing: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|n| !present.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    assert!(
        acked.len() > 100,
        "the writers made progress before and after ({})",
        acked.len()
    );
}

/// An input item for `s` as afw stores it, taken back out of the queue: pushing it with
/// `RPUSH` later queues it without a Pub/Sub wake-up (as when the notice is lost in a
/// Pub/Sub outage).
async fn stored_input_item(redis: &RedisServer, app: &TestApp, input: &str) -> String {
    app.post("/api/sessions/s/input", json!({"input": input}))
        .await;
    let raw = redis.cli(&["LPOP", "afw:input:s"]).trim().to_owned();
    assert!(raw.contains(input), "{raw}");
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_looks_at_the_queue_again_before_it_times_out() {
    let redis = RedisServer::start();
    let app = Arc::new(redis_instance(&redis).await);
    app.start_session("s").await;
    let item = stored_input_item(&redis, &app, "no wake-up").await;
    let poll = {
        let app = app.clone();
        tokio::spawn(async move { app.get("/api/sessions/s/input?timeout=1500").await.body })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.cli(&["RPUSH", "afw:input:s", &item]);
    let got = poll.await.unwrap();
    assert_eq!(
        got["available"], true,
        "a false empty answer while input was queued: {got}"
    );
    assert_eq!(got["input"]["input"], "no wake-up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_look_again_after_the_pubsub_link_comes_back() {
    let redis = RedisServer::start();
    let app = Arc::new(redis_instance(&redis).await);
    app.start_session("s").await;
    let item = stored_input_item(&redis, &app, "lost notice").await;
    let poll = {
        let app = app.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let body = app.get("/api/sessions/s/input?timeout=30000").await.body;
            (body, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.cli(&["RPUSH", "afw:input:s", &item]);
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    let (got, waited) = poll.await.unwrap();
    assert_eq!(got["input"]["input"], "lost notice");
    assert!(
        waited < Duration::from_secs(10),
        "woken by the re-subscribe, not the 30 s timeout: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_is_a_503_with_retry_after_and_degrades_health() {
    let redis = RedisServer::start();
    let app = redis_instance(&redis).await;
    app.event(event("session:started", "s", json!({"cwd": "/w"})))
        .await;
    // The README's policy: a full Redis refuses writes (OOM) instead of evicting.
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    for (path, body) in [
        ("/api/events", event("file:created", "s", json!({}))),
        ("/api/sessions/s/input", json!({"input": "x"})),
        ("/api/sessions/s/commands", json!({"type": "pause"})),
    ] {
        let res = app.post(path, body).await;
        assert_eq!(
            res.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            res.body
        );
        assert_eq!(res.headers["retry-after"], "1");
        assert!(res.body["error"].is_string());
        assert!(
            !res.body.to_string().contains("OOM command"),
            "no Redis text: {}",
            res.body
        );
    }
    let health = app.get("/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "degraded", "{}", health.body);
    assert_eq!(health.body["redis"]["connected"], true);
    assert_eq!(health.body["redis"]["writable"], false);
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.headers["retry-after"], "1");
    assert!(
        ready.body["error"].as_str().unwrap().contains("OOM"),
        "{}",
        ready.body
    );
    // Reads still work while Redis is full.
    assert_eq!(app.get("/api/sessions/s").await.status, StatusCode::OK);

    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(
        app.post("/api/events", event("file:created", "s", json!({})))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(app.get("/health").await.body["status"], "ok");
    assert_eq!(app.get("/ready").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_or_busy_redis_is_a_503_too() {
    let redis = RedisServer::start();
    let app = redis_instance(&redis).await;
    app.event(event("session:started", "s", json!({"cwd": "/w"})))
        .await;
    // A replica (of a master that is not there) refuses writes with READONLY.
    redis.cli(&["REPLICAOF", "127.0.0.1", "1"]);
    let res = app
        .post("/api/events", event("file:created", "s", json!({})))
        .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
    assert_eq!(res.headers["retry-after"], "1");
    let health = app.get("/health").await.body;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(
        app.get("/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    redis.cli(&["REPLICAOF", "NO", "ONE"]);
    wait_healthy(&app).await;

    // A script that runs too long: Redis answers everything else with BUSY.
    redis.cli(&["CONFIG", "SET", "busy-reply-threshold", "100"]);
    let port = redis.url().rsplit(':').next().unwrap().to_owned();
    let mut busy = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &port,
            "EVAL",
            "local t = redis.call('TIME')[1] + 3 while tonumber(redis.call('TIME')[1]) < t do end",
            "0",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let res = app
        .post("/api/events", event("file:created", "s", json!({})))
        .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
    assert_eq!(res.headers["retry-after"], "1");
    redis.cli(&["SCRIPT", "KILL"]);
    let _ = busy.wait();
    wait_healthy(&app).await;
    app.event(event("file:created", "s", json!({}))).await;
}
