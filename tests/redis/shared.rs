//! One suite, three backends: every scenario here runs against `MemoryStore`, against
//! `RedisStore` on a real redis-server, and against `RedisStore` on afw-sim's simulated
//! Redis, and must behave the same (which also holds the simulated Redis to the real one
//! for everything the adapter does: its Lua scripts, Pub/Sub, TTLs).

use std::collections::BTreeSet;
use std::time::Duration;

use afw::config::Config;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, event, fixture};
use crate::server::RedisServer;

pub enum Backend {
    Memory,
    Redis(RedisServer),
    /// The simulated Redis of afw-sim, on a loopback port.
    SimRedis(u16),
}

impl Backend {
    pub fn redis() -> Self {
        Self::Redis(RedisServer::start())
    }

    /// An instance on this backend, served on a loopback socket and ready.
    pub async fn app(&self, config: Config) -> TestApp {
        let config = match self {
            Backend::Memory => config,
            Backend::Redis(r) => Config {
                redis_url: Some(r.url()),
                ..config
            },
            Backend::SimRedis(port) => Config {
                redis_url: Some(format!("redis://127.0.0.1:{port}")),
                ..config
            },
        };
        let app = TestApp::serve(config).await;
        wait_healthy(&app).await;
        app
    }
}

/// An instance on `redis`, served on a loopback socket and healthy.
pub async fn redis_instance(redis: &RedisServer) -> TestApp {
    let app = TestApp::serve(Config {
        redis_url: Some(redis.url()),
        ..Config::default()
    })
    .await;
    wait_healthy(&app).await;
    app
}

/// Waits until `/health` says ok (in Redis mode: connected and subscribed).
pub async fn wait_healthy(app: &TestApp) {
    for _ in 0..200 {
        if app.get("/health").await.body["status"] == "ok" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("instance did not become healthy");
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(super::Backend::Memory).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$name(super::Backend::redis()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn simulated_redis() {
                let port = crate::server::spawn_sim_redis();
                super::$name(super::Backend::SimRedis(port)).await
            }
        }
    )*};
}

on_both_backends!(
    sessions_lifecycle,
    events_queries_and_batches,
    events_are_trimmed_at_the_cap,
    events_are_trimmed_at_the_byte_budget,
    the_fixture_derives_the_same_session_as_memory,
    listing_cursor_and_users,
    commands_claim_ack_and_lease,
    concurrent_claims_hand_out_each_command_once,
    command_queues_and_records_are_bounded,
    input_is_fifo_capped_and_wakes_long_polls,
    websocket_delivery_and_resume,
    concurrent_appends_each_get_their_own_seqs,
    a_retried_event_is_stored_once,
    a_trimmed_event_id_is_forgotten_with_its_event,
    retried_input_and_commands_with_a_key_are_queued_once,
    archival_marks_and_leases,
);

async fn sessions_lifecycle(backend: Backend) {
    let app = backend.app(Config::default()).await;
    let res = app
        .post(
            "/api/sessions",
            json!({"cwd": "/w", "id": "s1", "userId": "alice"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["status"], "pending");
    assert_eq!(
        app.post("/api/sessions", json!({"cwd": "/w", "id": "s1"}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    app.event(event(
        "chain:compiled",
        "s1",
        json!({"chainId": "c1", "title": "T", "steps": [{"stepNumber": 1, "action": "a"}]}),
    ))
    .await;
    let got = app.get("/api/sessions/s1").await.body;
    assert_eq!(got["status"], "pending");
    assert_eq!(got["chains"][0]["id"], "c1");
    let put = app
        .request(
            Method::PUT,
            "/api/sessions/s1",
            Some(json!({"status": "failed", "summary": "x"})),
        )
        .await;
    assert_eq!(put.body["status"], "failed");
    assert!(put.body["endedAt"].is_string());
    assert_eq!(app.get("/api/chains/c1").await.status, StatusCode::OK);
    assert_eq!(
        app.request(Method::DELETE, "/api/sessions/s1", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/api/sessions/s1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/chains/c1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/api/events/s1").await.body["count"], 0);
    assert_eq!(
        app.request(Method::DELETE, "/api/sessions/s1", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.request(
            Method::PUT,
            "/api/sessions/s1",
            Some(json!({"summary": "x"}))
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}

async fn events_queries_and_batches(backend: Backend) {
    let app = backend.app(Config::default()).await;
    for minute in 0..5 {
        let seq = app
            .event(json!({"type": "file:created", "sessionId": "s", "timestamp": format!("2026-11-20T14:0{minute}:00.000Z"), "n": minute}))
            .await;
        assert_eq!(seq, minute + 1);
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
    assert_eq!(all["lastSeq"], 5);
    assert_eq!(all["events"][2]["n"], 2);
    assert_eq!(seqs(&app.get("/api/events/s?after=3").await.body), [4, 5]);
    assert_eq!(
        seqs(&app.get("/api/events/s?after=1&limit=2").await.body),
        [2, 3]
    );
    assert_eq!(
        seqs(&app.get("/api/events/s?after=9").await.body),
        Vec::<u64>::new()
    );
    assert_eq!(
        seqs(
            &app.get("/api/events/s?since=2026-11-20T14:03:00.000Z")
                .await
                .body
        ),
        [4, 5]
    );
    assert_eq!(
        app.get("/api/sessions/s").await.body["status"],
        "in_progress"
    );
    let batch = app
        .post("/api/events/batch", json!({"events": [event("file:created", "a", json!({})), event("file:created", "s", json!({})), event("file:created", "a", json!({}))]}))
        .await;
    assert_eq!(batch.status, StatusCode::CREATED, "{}", batch.body);
    let got: Vec<(String, u64)> = batch.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["sessionId"].as_str().unwrap().to_owned(),
                r["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [("a".into(), 1), ("s".into(), 6), ("a".into(), 2)]);
    let recent = app.get("/api/events/a/recent?limit=1").await.body;
    assert_eq!(seqs(&recent), [2]);
}

async fn events_are_trimmed_at_the_cap(backend: Backend) {
    let app = backend
        .app(Config {
            max_events_per_session: 3,
            ..Config::default()
        })
        .await;
    for _ in 0..7 {
        app.event(event("file:created", "s", json!({}))).await;
    }
    let list = app.get("/api/events/s").await.body;
    let seqs: Vec<u64> = list["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [5, 6, 7]);
    assert_eq!(app.get("/api/events/s?after=5").await.body["count"], 2);
}

async fn events_are_trimmed_at_the_byte_budget(backend: Backend) {
    let app = backend
        .app(Config {
            session_budget_bytes: 2_000,
            ..Config::default()
        })
        .await;
    let pad = "x".repeat(400);
    for _ in 0..10 {
        app.event(event("file:created", "s", json!({"pad": pad})))
            .await;
    }
    let list = app.get("/api/events/s").await.body;
    let events = list["events"].as_array().unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    // Each stored event is just under 500 bytes: the newest four fit in 2 000.
    assert_eq!(seqs, [7, 8, 9, 10], "{list}");
    // One event larger than the whole budget still stays (the newest always does).
    app.event(event(
        "file:created",
        "s",
        json!({"pad": "y".repeat(3_000)}),
    ))
    .await;
    assert_eq!(app.get("/api/events/s").await.body["count"], 1);
    // A deleted session starts its budget over.
    app.request(Method::DELETE, "/api/sessions/s", None).await;
    app.event(event("file:created", "s", json!({}))).await;
    assert_eq!(app.get("/api/events/s").await.body["count"], 1);
}

async fn command_queues_and_records_are_bounded(backend: Backend) {
    let app = backend
        .app(Config {
            rate_limit_off: true,
            ..Config::default()
        })
        .await;
    app.start_session("s").await;
    let mut first = None;
    let mut last = String::new();
    for round in 0..11 {
        for _ in 0..100 {
            last = app.queue_command("s", json!({"type": "pause"})).await;
            first.get_or_insert_with(|| last.clone());
        }
        if round == 0 {
            // 100 wait for the agent: the next is refused, nothing is lost.
            let res = app
                .post("/api/sessions/s/commands", json!({"type": "pause"}))
                .await;
            assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{}", res.body);
            assert_eq!(res.headers["retry-after"], "1");
        }
        let claimed = app.get("/api/sessions/s/commands").await;
        assert_eq!(claimed.body["count"], 100);
    }
    // 1 100 records: the oldest claimed ones were dropped, the newest are kept.
    let oldest = app.get(&format!("/api/commands/{}", first.unwrap())).await;
    assert_eq!(oldest.status, StatusCode::NOT_FOUND);
    let newest = app.get(&format!("/api/commands/{last}")).await;
    assert_eq!(newest.body["status"], "delivered");
}

/// Without what the server draws itself: its clock reading and the session's epoch.
fn without_server_times(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("lastActivityAt");
        o.remove("epoch");
    }
    v
}

async fn the_fixture_derives_the_same_session_as_memory(backend: Backend) {
    let app = backend.app(Config::default()).await;
    let reference = Backend::Memory.app(Config::default()).await;
    for ev in fixture() {
        app.event(ev.clone()).await;
        reference.event(ev).await;
    }
    let sid = "7f3c2a1e-5b9d-4e8f-a6c2-1d0e9b8a7c65";
    let got = without_server_times(app.get(&format!("/api/sessions/{sid}")).await.body);
    let want = without_server_times(reference.get(&format!("/api/sessions/{sid}")).await.body);
    assert_eq!(got, want);
    assert_eq!(got["chains"][0]["steps"][2]["status"], "failed");
    assert_eq!(
        app.get(&format!("/api/events/{sid}")).await.body["events"],
        reference.get(&format!("/api/events/{sid}")).await.body["events"]
    );
}

async fn listing_cursor_and_users(backend: Backend) {
    let app = backend.app(Config::default()).await;
    for (i, user) in ["alice", "bob", "alice"].iter().enumerate() {
        app.event(event(
            "session:started",
            &format!("s{i}"),
            json!({"user": user, "cwd": "/w"}),
        ))
        .await;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let ids = |v: &Value| {
        v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&app.get("/api/sessions").await.body),
        ["s2", "s1", "s0"]
    );
    let first = app.get("/api/sessions?limit=2").await.body;
    assert_eq!(ids(&first), ["s2", "s1"]);
    let cursor = first["nextCursor"].as_str().unwrap();
    assert_eq!(
        ids(&app
            .get(&format!("/api/sessions?limit=2&cursor={cursor}"))
            .await
            .body),
        ["s0"]
    );
    assert_eq!(
        ids(&app.get("/api/sessions?user=alice").await.body),
        ["s2", "s0"]
    );
    let users = app.get("/api/users").await.body;
    assert_eq!(users["count"], 2);
    assert_eq!(users["users"][0]["sessionCount"], 2);
    assert_eq!(
        app.get("/api/users/bob/sessions").await.body["sessions"][0]["id"],
        "s1"
    );
}

async fn commands_claim_ack_and_lease(backend: Backend) {
    let app = backend.app(Config::default()).await;
    app.start_session("s").await;
    assert_eq!(
        app.post("/api/sessions/none/commands", json!({"type": "pause"}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let first = app
        .queue_command("s", json!({"type": "pause", "payload": {"graceful": true}}))
        .await;
    let second = app
        .queue_command("s", json!({"type": "retry", "payload": {"stepNumber": 2}}))
        .await;
    let claimed = app.get("/api/sessions/s/commands").await.body;
    let ids: Vec<&str> = claimed["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    let c = &claimed["commands"][0];
    assert_eq!(
        (
            c["type"].clone(),
            c["status"].clone(),
            c["commandId"].clone()
        ),
        (json!("pause"), json!("pending"), json!(first))
    );
    assert_eq!(
        c["command"],
        json!({"type": "pause", "payload": {"graceful": true}})
    );
    assert_eq!(app.get("/api/sessions/s/commands").await.body["count"], 0);
    assert_eq!(
        app.get(&format!("/api/commands/{first}")).await.body["status"],
        "delivered"
    );
    let ack = app
        .post(
            &format!("/api/commands/{first}/ack"),
            json!({"result": {"ok": true}}),
        )
        .await;
    assert_eq!(ack.body["acknowledged"], true);
    let record = app.get(&format!("/api/commands/{first}")).await.body;
    assert_eq!(record["status"], "acked");
    assert_eq!(record["result"], json!({"ok": true}));
    app.post(
        &format!("/api/commands/{second}/ack"),
        json!({"error": "no such step"}),
    )
    .await;
    assert_eq!(
        app.get(&format!("/api/commands/{second}")).await.body["status"],
        "failed"
    );
    assert_eq!(
        app.post("/api/commands/cmd-1-none/ack", json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let leased = app.queue_command("s", json!({"type": "cancel"})).await;
    assert_eq!(
        app.get("/api/sessions/s/commands?lease=300").await.body["commands"][0]["id"],
        leased.as_str()
    );
    assert_eq!(
        app.get("/api/sessions/s/commands?lease=300").await.body["count"],
        0
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = app.get("/api/sessions/s/commands?lease=300").await.body;
    assert_eq!(
        again["commands"][0]["id"],
        leased.as_str(),
        "redelivered after the lease"
    );
    assert_eq!(again["commands"][0]["status"], "pending");
    app.post(&format!("/api/commands/{leased}/ack"), json!({}))
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        app.get("/api/sessions/s/commands?lease=300").await.body["count"],
        0
    );
}

async fn concurrent_claims_hand_out_each_command_once(backend: Backend) {
    let app = std::sync::Arc::new(backend.app(Config::default()).await);
    app.start_session("s").await;
    let mut ids = BTreeSet::new();
    for _ in 0..40 {
        ids.insert(app.queue_command("s", json!({"type": "pause"})).await);
    }
    let mut polls = Vec::new();
    for _ in 0..6 {
        let app = app.clone();
        polls.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..4 {
                for c in app.get("/api/sessions/s/commands").await.body["commands"]
                    .as_array()
                    .unwrap()
                {
                    got.push(c["id"].as_str().unwrap().to_owned());
                }
            }
            got
        }));
    }
    let mut claimed = Vec::new();
    for p in polls {
        claimed.extend(p.await.unwrap());
    }
    assert_eq!(claimed.len(), 40);
    assert_eq!(claimed.into_iter().collect::<BTreeSet<_>>(), ids);
}

async fn input_is_fifo_capped_and_wakes_long_polls(backend: Backend) {
    let app = std::sync::Arc::new(
        backend
            .app(Config {
                max_input_queue: 2,
                ..Config::default()
            })
            .await,
    );
    app.start_session("s").await;
    assert_eq!(
        app.post("/api/sessions/none/input", json!({"input": "x"}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    app.post("/api/sessions/s/awaiting", json!({"promptText": "?"}))
        .await;
    assert_eq!(
        app.get("/api/sessions/s").await.body["conversationState"],
        "awaiting_input"
    );
    assert_eq!(
        app.post("/api/sessions/s/input", json!({"input": "one"}))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.post("/api/sessions/s/input", json!({"input": "two"}))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.post("/api/sessions/s/input", json!({"input": "three"}))
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        app.get("/api/sessions/s/input").await.body["input"]["input"],
        "one"
    );
    assert_eq!(
        app.get("/api/sessions/s").await.body["conversationState"],
        "idle"
    );
    assert_eq!(
        app.get("/api/sessions/s/input").await.body["input"]["input"],
        "two"
    );
    assert_eq!(
        app.get("/api/sessions/s/input").await.body["available"],
        false
    );
    let poll = {
        let app = app.clone();
        tokio::spawn(async move { app.get("/api/sessions/s/input?timeout=10000").await.body })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = tokio::time::Instant::now();
    app.post("/api/sessions/s/input", json!({"input": "late"}))
        .await;
    let got = poll.await.unwrap();
    assert_eq!(got["input"]["input"], "late");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "woken by the arrival, not the timeout"
    );
}

async fn websocket_delivery_and_resume(backend: Backend) {
    let app = backend.app(Config::default()).await;
    let mut ws = app.ws().await;
    ws.subscribe("s", None).await;
    for _ in 0..10 {
        app.event(event("file:created", "s", json!({}))).await;
    }
    assert_eq!(ws.event_seqs(10).await, (1..=10).collect::<Vec<_>>());
    let mut resumed = app.ws().await;
    assert_eq!(
        resumed.subscribe("s", Some(6)).await["payload"]["recovered"],
        true
    );
    app.event(event("file:created", "s", json!({}))).await;
    assert_eq!(resumed.event_seqs(5).await, [7, 8, 9, 10, 11]);
    assert_eq!(ws.event_seqs(1).await, [11]);
    ws.expect_silence(Duration::from_millis(200)).await;
    resumed.expect_silence(Duration::from_millis(100)).await;
}

async fn concurrent_appends_each_get_their_own_seqs(backend: Backend) {
    let app = std::sync::Arc::new(backend.app(Config::default()).await);
    let mut writers = Vec::new();
    for w in 0..16u64 {
        let app = app.clone();
        writers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..10u64 {
                let n = w * 100 + i;
                if i % 3 == 0 {
                    // A batch of two, interleaved with single posts.
                    let res = app
                        .post(
                            "/api/events/batch",
                            json!({"events": [
                                event("file:created", "hot", json!({"n": n})),
                                event("file:created", "hot", json!({"n": n + 50})),
                            ]}),
                        )
                        .await;
                    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
                    for (k, r) in res.body["results"].as_array().unwrap().iter().enumerate() {
                        mine.push((r["seq"].as_u64().unwrap(), n + 50 * k as u64));
                    }
                } else {
                    let res = app
                        .post("/api/events", event("file:created", "hot", json!({"n": n})))
                        .await;
                    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
                    mine.push((res.body["seq"].as_u64().unwrap(), n));
                }
            }
            mine
        }));
    }
    let mut answered = Vec::new();
    for w in writers {
        answered.extend(w.await.unwrap());
    }
    answered.sort_unstable();
    let total = answered.len() as u64;
    assert_eq!(
        answered.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    let stored = app.get("/api/events/hot?limit=10000").await.body;
    let by_seq: Vec<(u64, u64)> = stored["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap(), e["n"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        by_seq, answered,
        "each answer names the seq its own event was stored under"
    );
}

/// A retry with the same `eventId` (single or in a batch, alone or repeated in one batch) is
/// answered with the original `seq` and `duplicate: true`, and nothing is stored twice: not
/// the event, not its effect on the session.
async fn a_retried_event_is_stored_once(backend: Backend) {
    let app = backend.app(Config::default()).await;
    let ev = |id: &str| event("step:spawned", "s", json!({"eventId": id, "stepNumber": 1}));
    let first = app.post("/api/events", ev("e-1")).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["seq"], 1);
    assert!(first.body.get("duplicate").is_none(), "{}", first.body);
    let again = app.post("/api/events", ev("e-1")).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["seq"], 1);
    assert_eq!(again.body["duplicate"], true);
    assert_eq!(again.body["eventId"], "e-1");
    // A batch: a stored id, a new one twice, an event without id.
    let batch = app
        .post(
            "/api/events/batch",
            json!({"events": [ev("e-1"), ev("e-2"), ev("e-2"),
                event("file:created", "s", json!({}))]}),
        )
        .await;
    assert_eq!(batch.status, StatusCode::CREATED, "{}", batch.body);
    let results = batch.body["results"].as_array().unwrap();
    let seqs: Vec<u64> = results.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    let dups: Vec<bool> = results
        .iter()
        .map(|r| r["duplicate"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(seqs, [1, 2, 2, 3], "{}", batch.body);
    assert_eq!(dups, [true, false, true, false], "{}", batch.body);
    let stored = app.get("/api/events/s").await.body;
    assert_eq!(stored["count"], 3, "{stored}");
    assert_eq!(stored["lastSeq"], 3);
    let session = app.get("/api/sessions/s").await.body;
    assert_eq!(session["eventCount"], 3, "{session}");
    // Ids are per session: the same id in another session is a new event.
    let other = app
        .post(
            "/api/events",
            event("step:spawned", "t", json!({"eventId": "e-1"})),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
    assert_eq!(other.body["seq"], 1);
}

/// Ids are remembered for as long as their events are kept: once trimmed, the id is
/// forgotten with it (bounded memory), and the set of ids follows the session's TTL.
async fn a_trimmed_event_id_is_forgotten_with_its_event(backend: Backend) {
    let app = backend
        .app(Config {
            max_events_per_session: 2,
            ..Config::default()
        })
        .await;
    for id in ["a", "b", "c"] {
        app.event(event("file:created", "s", json!({"eventId": id})))
            .await;
    }
    let kept = app
        .post(
            "/api/events",
            event("file:created", "s", json!({"eventId": "b"})),
        )
        .await;
    assert_eq!(kept.body["duplicate"], true, "{}", kept.body);
    assert_eq!(kept.body["seq"], 2);
    let trimmed = app
        .post(
            "/api/events",
            event("file:created", "s", json!({"eventId": "a"})),
        )
        .await;
    assert_eq!(trimmed.status, StatusCode::CREATED, "{}", trimmed.body);
    assert_eq!(trimmed.body["seq"], 4);
    if let Backend::Redis(redis) = &backend {
        let ids = redis.cli(&["ZRANGE", "afw:eventids:s", "0", "-1", "WITHSCORES"]);
        assert_eq!(
            ids.split_whitespace().collect::<Vec<_>>(),
            ["c", "3", "a", "4"]
        );
        let ttl: i64 = redis
            .cli(&["PTTL", "afw:eventids:s"])
            .trim()
            .parse()
            .unwrap();
        assert!(ttl > 0, "the id set expires with the session: {ttl}");
    }
}

/// Input and commands with a client key (`Idempotency-Key` or `id`): a retry answers 200
/// `duplicate: true` and queues nothing, even after the first was popped or claimed; the
/// same key in another session's command is a 409; a bad key is a 400.
async fn retried_input_and_commands_with_a_key_are_queued_once(backend: Backend) {
    let app = backend.app(Config::default()).await;
    app.start_session("s").await;
    app.start_session("t").await;
    let first = app
        .post(
            "/api/sessions/s/input",
            json!({"input": "yes", "id": "in-1"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["inputId"], "in-1");
    let popped = app.get("/api/sessions/s/input").await.body;
    assert_eq!(popped["input"]["id"], "in-1", "{popped}");
    let retry = app
        .post_with(
            "/api/sessions/s/input",
            &[("idempotency-key", "in-1")],
            json!({"input": "yes"}),
        )
        .await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.body);
    assert_eq!(retry.body["duplicate"], true);
    let empty = app.get("/api/sessions/s/input").await.body;
    assert_eq!(
        empty["available"], false,
        "the retry queued nothing: {empty}"
    );
    let bad = app
        .post(
            "/api/sessions/s/input",
            json!({"input": "x", "id": "no spaces"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);

    let cmd = json!({"type": "pause", "id": "cmd-key-1"});
    let queued = app.post("/api/sessions/s/commands", cmd.clone()).await;
    assert_eq!(queued.status, StatusCode::CREATED, "{}", queued.body);
    assert_eq!(queued.body["commandId"], "cmd-key-1");
    let claimed = app.get("/api/sessions/s/commands").await.body;
    assert_eq!(claimed["count"], 1);
    let again = app.post("/api/sessions/s/commands", cmd.clone()).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["duplicate"], true);
    assert_eq!(again.body["command"]["status"], "delivered");
    assert_eq!(app.get("/api/sessions/s/commands").await.body["count"], 0);
    let elsewhere = app.post("/api/sessions/t/commands", cmd).await;
    assert_eq!(elsewhere.status, StatusCode::CONFLICT, "{}", elsewhere.body);
}

/// The archiver's bookkeeping: due marks in mark order, cleared only by a filing that read
/// after the mark, and leases that one instance holds at a time (renewed by its holder,
/// released by filing, free again once their term runs out).
async fn archival_marks_and_leases(backend: Backend) {
    use afw::domain::model::{SessionId, Timestamp};
    let app = backend.app(Config::default()).await;
    let store = app.state.store();
    let (a, b) = (
        SessionId::parse("due-a").unwrap(),
        SessionId::parse("due-b").unwrap(),
    );
    let later = Timestamp(u64::from(u32::MAX) * 1000);
    assert!(store.archive_mark(&a).await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(store.archive_mark(&b).await.unwrap());
    assert_eq!(
        store.archive_due(later, 10).await.unwrap(),
        [a.clone(), b.clone()]
    );
    assert_eq!(store.archive_due(later, 1).await.unwrap(), vec![a.clone()]);
    assert!(
        store
            .archive_due(Timestamp(0), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A filing that read before the mark leaves it due; one that read after clears it.
    store.archive_filed(&a, Timestamp(0)).await.unwrap();
    assert_eq!(store.archive_due(later, 10).await.unwrap().len(), 2);
    store.archive_filed(&a, later).await.unwrap();
    assert_eq!(store.archive_due(later, 10).await.unwrap(), vec![b.clone()]);
    // Marked again: due after b now.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(store.archive_mark(&a).await.unwrap());
    assert_eq!(
        store.archive_due(later, 10).await.unwrap(),
        [b.clone(), a.clone()]
    );

    assert_eq!(store.take_lease("test", 60_000).await.unwrap(), None);
    assert_eq!(
        store.take_lease("test", 60_000).await.unwrap(),
        None,
        "renewed"
    );
    let lease_a = afw::storage::archive_lease(&a);
    assert_eq!(store.take_lease(&lease_a, 60_000).await.unwrap(), None);
    if let Backend::Memory = backend {
        return; // one instance per memory store: it holds every lease
    }
    let other = backend
        .app(Config {
            instance_id: Some("afw-other".into()),
            ..Config::default()
        })
        .await;
    let theirs = other.state.store();
    let left = theirs.take_lease("test", 60_000).await.unwrap();
    assert!(left.is_some_and(|ms| ms > 0 && ms <= 60_000), "{left:?}");
    assert!(theirs.take_lease(&lease_a, 60_000).await.unwrap().is_some());
    // The other instance's filing clears nothing of ours: the lease stays ours.
    theirs.archive_filed(&b, Timestamp(0)).await.unwrap();
    assert!(theirs.take_lease(&lease_a, 60_000).await.unwrap().is_some());
    // Filing gives the session's lease back; the due set is shared.
    store.archive_filed(&a, later).await.unwrap();
    assert_eq!(theirs.take_lease(&lease_a, 60_000).await.unwrap(), None);
    assert_eq!(
        theirs.archive_due(later, 10).await.unwrap(),
        vec![b.clone()]
    );
    // A lease whose holder stops renewing it is free once its term runs out.
    assert_eq!(store.take_lease("short", 100).await.unwrap(), None);
    assert!(theirs.take_lease("short", 100).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(theirs.take_lease("short", 100).await.unwrap(), None);
}
