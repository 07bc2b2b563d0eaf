//! Exactly once against a real Redis: notices inside the write scripts, idempotent event
//! writes across instances, session epochs, per-item batch results; and listings that read
//! one page from their indexes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::event;
use crate::server::RedisServer;
use crate::shared::redis_instance;

/// Every command Redis runs while `work` runs, as `MONITOR` prints them (a command a script
/// ran is tagged `[0 lua]`).
async fn monitored<F: std::future::Future<Output = ()>>(
    redis: &RedisServer,
    work: F,
) -> Vec<String> {
    let mut child = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "monitor"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli monitor");
    let stdout = child.stdout.take().expect("its stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    // A plain thread: blocking reads of a child's pipe, in a test only.
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // MONITOR answers OK once it is on: wait for it, so nothing is missed.
    let ok = rx.recv_timeout(Duration::from_secs(5)).expect("MONITOR on");
    assert_eq!(ok, "OK");
    work.await;
    redis.cli(&["PING"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    rx.try_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_notice_is_published_by_the_script_that_makes_the_write() {
    let redis = RedisServer::start();
    let app = redis_instance(&redis).await;
    app.start_session("s").await;
    let lines = monitored(&redis, async {
        let put = app
            .request(
                Method::PUT,
                "/api/sessions/s",
                Some(json!({"summary": "x"})),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.body);
        let awaiting = app
            .post("/api/sessions/s/awaiting", json!({"promptText": "go?"}))
            .await;
        assert_eq!(awaiting.status, StatusCode::OK, "{}", awaiting.body);
        let input = app
            .post("/api/sessions/s/input", json!({"input": "yes"}))
            .await;
        assert_eq!(input.status, StatusCode::CREATED, "{}", input.body);
        app.queue_command("s", json!({"type": "pause"})).await;
        app.event(event("file:created", "s", json!({"path": "/w/a"})))
            .await;
        let delete = app.request(Method::DELETE, "/api/sessions/s", None).await;
        assert_eq!(delete.status, StatusCode::NO_CONTENT);
    })
    .await;
    let publishes: Vec<&String> = lines.iter().filter(|l| l.contains("\"PUBLISH\"")).collect();
    for line in &publishes {
        assert!(
            line.contains("lua]"),
            "a PUBLISH outside the write's script: {line}"
        );
    }
    for kind in [
        "session:updated",
        "awaiting",
        "input:queued",
        "command:queued",
        "file:created",
        "session:deleted",
    ] {
        assert!(
            publishes.iter().any(|l| l.contains(kind)),
            "no {kind} published; saw {publishes:#?}"
        );
    }
    // The queue length the script knew, not a placeholder.
    let queued = publishes
        .iter()
        .find(|l| l.contains("input:queued"))
        .unwrap();
    assert!(queued.contains(r#"\"queueLength\":1"#), "{queued}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_through_another_instance_is_recognised() {
    let redis = RedisServer::start();
    let a = redis_instance(&redis).await;
    let b = redis_instance(&redis).await;
    let ev = event("file:created", "s", json!({"eventId": "hook-42"}));
    let first = a.post("/api/events", ev.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    // B has never seen the session (nothing cached): the id is checked in Redis.
    let retry = b.post("/api/events", ev).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.body);
    assert_eq!(retry.body["duplicate"], true);
    assert_eq!(retry.body["seq"], first.body["seq"]);
    assert_eq!(redis.cli(&["LLEN", "afw:events:s"]).trim(), "1");
    // And in the other direction, after B wrote last.
    b.event(event("file:created", "s", json!({"eventId": "hook-43"})))
        .await;
    let back = a
        .post(
            "/api/events",
            event("file:created", "s", json!({"eventId": "hook-43"})),
        )
        .await;
    assert_eq!(back.body["duplicate"], true, "{}", back.body);
    assert_eq!(back.body["seq"], 2);
    assert_eq!(redis.cli(&["LLEN", "afw:events:s"]).trim(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_says_which_events_were_stored_when_only_some_sessions_were() {
    let redis = RedisServer::start();
    let app = redis_instance(&redis).await;
    // A session whose stored JSON is unreadable: its append fails, the others' do not.
    redis.cli(&["SET", "afw:sessions:broken", "not json"]);
    let batch = json!({"events": [
        event("file:created", "ok", json!({"eventId": "a"})),
        event("file:created", "broken", json!({"eventId": "b"})),
        event("file:created", "ok", json!({"eventId": "c"})),
    ]});
    let res = app.post("/api/events/batch", batch.clone()).await;
    assert_eq!(res.status, StatusCode::MULTI_STATUS, "{}", res.body);
    assert_eq!(res.body["success"], false);
    assert_eq!(res.body["count"], 2);
    let results = res.body["results"].as_array().unwrap();
    assert_eq!(results[0]["seq"], 1);
    assert_eq!(results[2]["seq"], 2);
    assert_eq!(results[1]["sessionId"], "broken");
    assert_eq!(results[1]["eventId"], "b");
    assert!(results[1]["error"].is_string(), "{}", res.body);
    assert!(results[1].get("seq").is_none(), "{}", res.body);
    assert_eq!(redis.cli(&["LLEN", "afw:events:ok"]).trim(), "2");
    // Re-sending the whole batch is safe: the stored ones are duplicates.
    let again = app.post("/api/events/batch", batch).await;
    assert_eq!(again.status, StatusCode::MULTI_STATUS, "{}", again.body);
    assert_eq!(again.body["results"][0]["duplicate"], true);
    assert_eq!(again.body["results"][2]["duplicate"], true);
    assert_eq!(redis.cli(&["LLEN", "afw:events:ok"]).trim(), "2");
    // Nothing stored at all: the plain error.
    let none = app
        .post(
            "/api/events/batch",
            json!({"events": [event("file:created", "broken", json!({}))]}),
        )
        .await;
    assert!(none.status.is_server_error(), "{}", none.body);
    assert!(none.body.get("results").is_none(), "{}", none.body);
}

/// Redis loses its data while a dashboard follows a session and the hook keeps posting:
/// the new incarnation's seqs pass the dashboard's cursor. The dashboard is told
/// `recovered: false` (with the new epoch) and gets the new incarnation from seq 1 — not
/// its events 6 and 7 passed off as the continuation of the old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_recreated_after_data_loss_is_not_taken_for_a_continuation() {
    let redis = RedisServer::start();
    let app = redis_instance(&redis).await;
    let mut ws = app.ws().await;
    let first = ws.subscribe("s", None).await;
    assert!(
        first["payload"].get("epoch").is_none(),
        "no session yet: {first}"
    );
    for _ in 0..5 {
        app.event(event("file:created", "s", json!({}))).await;
    }
    assert_eq!(ws.event_seqs(5).await, [1, 2, 3, 4, 5]);
    let old = app.get("/api/events/s").await.body;
    let old_epoch = old["epoch"].as_str().unwrap().to_owned();
    redis.cli(&["FLUSHALL"]);
    for i in 0..7 {
        app.event(event("file:created", "s", json!({"n": i}))).await;
    }
    let mut confirmed = None;
    let mut seqs = Vec::new();
    while seqs.len() < 7 {
        let frame = ws.next_json().await;
        match crate::helpers::event_seq(&frame) {
            Some(seq) => seqs.push((seq, frame["n"].as_u64())),
            None if frame["type"] == "subscription_confirmed" => confirmed = Some(frame),
            None => {}
        }
    }
    let confirmed = confirmed.expect("a confirmation saying the session began again");
    assert_eq!(confirmed["payload"]["recovered"], false, "{confirmed}");
    assert_eq!(
        confirmed["payload"]["lastSeq"], 0,
        "delivery starts over: {confirmed}"
    );
    let new_epoch = confirmed["payload"]["epoch"].as_str().unwrap().to_owned();
    assert_ne!(new_epoch, old_epoch);
    let expected: Vec<(u64, Option<u64>)> = (1..=7).map(|s| (s, Some(s - 1))).collect();
    assert_eq!(seqs, expected, "the new incarnation from seq 1, each once");
    ws.expect_silence(Duration::from_millis(200)).await;
    // Resuming with the old epoch starts over too, over REST and over the WebSocket.
    let rest = app
        .get(&format!("/api/events/s?after=5&epoch={old_epoch}"))
        .await
        .body;
    assert_eq!(rest["recovered"], false, "{rest}");
    assert_eq!(rest["epoch"], new_epoch.as_str());
    assert_eq!(rest["count"], 7);
    let same = app
        .get(&format!("/api/events/s?after=5&epoch={new_epoch}"))
        .await
        .body;
    assert!(same.get("recovered").is_none(), "{same}");
    assert_eq!(same["count"], 2);
    let mut again = app.ws().await;
    again
        .send(json!({"type": "subscribe", "sessionId": "s", "after": 5, "epoch": old_epoch}))
        .await;
    let confirm = again.next_json().await;
    assert_eq!(confirm["payload"]["recovered"], false, "{confirm}");
    assert_eq!(confirm["payload"]["epoch"], new_epoch.as_str());
    assert_eq!(again.event_seqs(7).await, [1, 2, 3, 4, 5, 6, 7]);
}

/// A page of sessions or users reads one page from the indexes, not every session: with
/// 300 sessions, no command reads a whole index and no `MGET` asks for more than a chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_reads_one_page_not_every_session() {
    let redis = RedisServer::start();
    let app = redis_instance(&redis).await;
    for i in 0..300 {
        let user = format!("user{}", i % 30);
        app.event(event(
            "session:started",
            &format!("s{i}"),
            json!({"cwd": "/w", "user": user}),
        ))
        .await;
    }
    app.event(event("session:ended", "s7", json!({}))).await;
    let lines = monitored(&redis, async {
        let page = app.get("/api/sessions?limit=10").await.body;
        assert_eq!(page["count"], 10, "{page}");
        assert_eq!(page["sessions"][0]["id"], "s7", "newest activity first");
        let done = app
            .get("/api/sessions?status=completed&limit=10")
            .await
            .body;
        assert_eq!(done["count"], 1, "{done}");
        let users = app.get("/api/users?limit=3").await.body;
        assert_eq!(users["count"], 3, "{users}");
        assert_eq!(users["users"][0]["sessionCount"], 10, "{users}");
        let alice = app.get("/api/users/user3/sessions?limit=5").await.body;
        assert_eq!(alice["sessionCount"], 5, "{alice}");
    })
    .await;
    for line in &lines {
        assert!(
            !(line.contains("\"ZRANGE\"") && line.contains("\"0\" \"-1\"")),
            "a whole index read: {line}"
        );
        if line.contains("\"MGET\"") {
            let keys = line.matches("afw:sessions:").count();
            assert!(keys <= 64, "an MGET of {keys} sessions: {line}");
        }
    }
    assert!(lines.iter().any(|l| l.contains("index:status:completed")));
    assert!(lines.iter().any(|l| l.contains("index:users")));
}
