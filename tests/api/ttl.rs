//! TTLs on paused tokio time: the injected clock follows it, so a day passes in no time.

use std::sync::Arc;
use std::time::Duration;

use afw::bus::Bus;
use afw::domain::ingest::parse_event;
use afw::domain::model::SessionId;
use afw::ports::TokioClock;
use afw::storage::memory::MemoryStore;
use afw::storage::{Store, StoreLimits};
use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{EPOCH_MS, TestApp, event};

const SECOND: Duration = Duration::from_secs(1);
const DAY: Duration = Duration::from_secs(24 * 3600);
const FIVE_MIN: Duration = Duration::from_secs(300);

#[tokio::test(start_paused = true)]
async fn sessions_expire_a_day_after_their_last_activity_not_before() {
    let app = TestApp::new();
    app.event(event(
        "chain:compiled",
        "s",
        json!({"chainId": "c", "title": "t", "steps": []}),
    ))
    .await;
    tokio::time::sleep(DAY - SECOND).await;
    assert_eq!(app.get("/api/sessions/s").await.status, StatusCode::OK);
    // Activity refreshes every TTL together.
    app.event(event("file:created", "s", json!({}))).await;
    tokio::time::sleep(DAY - SECOND).await;
    assert_eq!(app.get("/api/sessions/s").await.status, StatusCode::OK);
    assert_eq!(app.get("/api/chains/c").await.status, StatusCode::OK);
    tokio::time::sleep(2 * SECOND).await;
    assert_eq!(
        app.get("/api/sessions/s").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/api/chains/c").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/events/s").await.body["count"], 0);
    // A new event starts a new session from seq 1.
    assert_eq!(app.event(event("file:created", "s", json!({}))).await, 1);
}

#[tokio::test(start_paused = true)]
async fn queues_expire_after_five_idle_minutes_but_the_session_stays() {
    let app = TestApp::new();
    app.event(event("session:started", "s", json!({"cwd": "/w"})))
        .await;
    let cmd = app.queue_command("s", json!({"type": "pause"})).await;
    app.post("/api/sessions/s/input", json!({"input": "x"}))
        .await;
    tokio::time::sleep(FIVE_MIN + SECOND).await;
    assert_eq!(app.get("/api/sessions/s/commands").await.body["count"], 0);
    assert_eq!(
        app.get("/api/sessions/s/input").await.body["available"],
        false
    );
    assert_eq!(
        app.get(&format!("/api/commands/{cmd}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/api/sessions/s").await.status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn activity_keeps_the_queues_alive() {
    let app = TestApp::new();
    app.event(event("session:started", "s", json!({"cwd": "/w"})))
        .await;
    app.post("/api/sessions/s/commands", json!({"type": "pause"}))
        .await;
    tokio::time::sleep(4 * 60 * SECOND).await;
    app.event(event("file:created", "s", json!({}))).await;
    tokio::time::sleep(4 * 60 * SECOND).await;
    assert_eq!(app.get("/api/sessions/s/commands").await.body["count"], 1);
}

#[tokio::test(start_paused = true)]
async fn the_purge_task_frees_expired_sessions_without_being_asked() {
    let store = MemoryStore::new(
        Arc::new(TokioClock::starting_at(EPOCH_MS)),
        StoreLimits::default(),
        Arc::new(Bus::new()),
        Arc::new(afw::ports::IdGen::from_seed(1)),
    );
    for i in 0..100 {
        let raw = format!(r#"{{"type":"file:created","sessionId":"s{i}","timestamp":1}}"#);
        let ev = parse_event(raw.into_bytes().into(), "").unwrap();
        store
            .append_events(&SessionId::parse(&format!("s{i}")).unwrap(), vec![ev])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    assert_eq!(store.session_count(), 100);
    // The first session was created 100 minutes before now: it goes first.
    tokio::time::sleep(DAY - Duration::from_secs(100 * 60) + SECOND).await;
    assert_eq!(store.session_count(), 99);
    tokio::time::sleep(Duration::from_secs(100 * 60)).await;
    assert_eq!(store.session_count(), 0);
}

/// The wall clock of a machine that was suspended or stepped by NTP: it jumps while tokio's
/// monotonic timers stand still.
struct JumpingClock {
    base: TokioClock,
    jumped_ms: std::sync::atomic::AtomicU64,
}

impl afw::ports::Clock for JumpingClock {
    fn now_ms(&self) -> u64 {
        self.base.now_ms() + self.jumped_ms.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test(start_paused = true)]
async fn the_purge_task_notices_a_wall_clock_jump_within_a_minute() {
    let clock = Arc::new(JumpingClock {
        base: TokioClock::starting_at(EPOCH_MS),
        jumped_ms: 0.into(),
    });
    let store = MemoryStore::new(
        clock.clone(),
        StoreLimits::default(),
        Arc::new(Bus::new()),
        Arc::new(afw::ports::IdGen::from_seed(1)),
    );
    let raw = r#"{"type":"file:created","sessionId":"s","timestamp":1}"#;
    let ev = parse_event(raw.as_bytes().to_vec().into(), "").unwrap();
    store
        .append_events(&SessionId::parse("s").unwrap(), vec![ev])
        .await
        .unwrap();
    tokio::time::sleep(SECOND).await;
    assert_eq!(store.session_count(), 1);
    // A day passes on the wall clock only (the machine was asleep).
    clock
        .jumped_ms
        .store(DAY.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(store.session_count(), 0, "the purge slept through the jump");
}
