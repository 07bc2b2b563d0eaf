//! Archival on session end and the history routes, with the directory archive.

use std::path::PathBuf;
use std::time::Duration;

use afw::config::{ArchiveSetting, Config};
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// A fresh directory under the system's temporary directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("afw-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn archived_to(dir: &TempDir) -> Config {
    Config {
        archive: ArchiveSetting::Dir(dir.0.join("history")),
        ..Config::default()
    }
}

/// Started, one chain with a step, ended: the hooks' whole loop.
async fn run_session(test: &TestApp, sid: &str) {
    for event in [
        json!({"type": "session:started", "sessionId": sid, "timestamp": "2026-11-20T14:00:00.000Z", "user": "ana", "cwd": "/w"}),
        json!({"type": "chain:compiled", "sessionId": sid, "timestamp": "2026-11-20T14:00:01.000Z", "chainId": format!("{sid}-1"), "title": "t", "steps": [{"stepNumber": 1, "action": "code"}]}),
        json!({"type": "step:spawned", "sessionId": sid, "timestamp": "2026-11-20T14:00:02.000Z", "stepNumber": 1, "action": "code"}),
        json!({"type": "session:ended", "sessionId": sid, "timestamp": "2026-11-20T14:00:03.000Z", "reason": "done"}),
    ] {
        let res = test.post("/api/events", event).await;
        assert_eq!(res.status, 201, "{}", res.body);
    }
}

/// Polls `path` until `done` holds (archival runs off the request path).
async fn eventually(test: &TestApp, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..400 {
        let res = test.get(path).await;
        if res.status == 200 && done(&res.body) {
            return res.body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{path} never became what was expected: {}",
        test.get(path).await.body
    );
}

#[tokio::test]
async fn an_ended_session_is_archived_and_served_by_the_history_routes() {
    let dir = TempDir::new("history");
    let test = TestApp::with_config(archived_to(&dir));
    run_session(&test, "h-1").await;
    let dates = eventually(&test, "/api/history/dates", |b| b["total"] == 1).await;
    assert_eq!(dates, json!({"dates": ["2026-11-20"], "total": 1}));
    let day = test.get("/api/history/sessions/2026-11-20").await;
    assert_eq!(
        day.body,
        json!({"date": "2026-11-20", "sessionIds": ["h-1"], "total": 1})
    );
    let snap = test.get("/api/history/session/h-1?date=2026-11-20").await;
    assert_eq!(snap.status, 200);
    let live = test.get("/api/sessions/h-1").await.body;
    assert_eq!(snap.body["session"]["status"], "completed");
    assert_eq!(snap.body["session"]["id"], "h-1");
    assert_eq!(snap.body["epoch"], live["epoch"]);
    let events = snap.body["events"].as_array().unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(events[3]["type"], "session:ended");
    assert_eq!(snap.body["chains"][0]["id"], "h-1-1");
    assert!(snap.body["savedAt"].is_string());
    // Without a date: the newest snapshot; under another date: none.
    assert_eq!(test.get("/api/history/session/h-1").await.body, snap.body);
    let elsewhere = test.get("/api/history/session/h-1?date=2026-11-21").await;
    assert_eq!(elsewhere.status, 404);
    // On disk: <date>/<id>.json, and no temporary file left behind.
    let files: Vec<String> = std::fs::read_dir(dir.0.join("history/2026-11-20"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, ["h-1.json"]);
    let stats = test.get("/api/history/stats").await.body;
    assert_eq!(stats["totalDates"], 1);
    assert_eq!(stats["totalSessions"], 1);
    assert_eq!(stats["oldestDate"], "2026-11-20");
    assert_eq!(stats["archive"], "dir");
    let metrics = test.state.metrics().render();
    assert!(
        metrics.contains(r#"afw_archive_snapshots_total{outcome="created"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("afw_archive_pending 0"), "{metrics}");
}

#[tokio::test]
async fn a_session_updated_after_it_ended_is_archived_again_as_one_snapshot() {
    let dir = TempDir::new("history-again");
    let test = TestApp::with_config(archived_to(&dir));
    run_session(&test, "h-2").await;
    eventually(&test, "/api/history/session/h-2", |b| {
        b["session"]["status"] == "completed"
    })
    .await;
    let res = test
        .request(
            axum::http::Method::PUT,
            "/api/sessions/h-2",
            Some(json!({"status": "failed", "summary": "late verdict"})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let snap = eventually(&test, "/api/history/session/h-2", |b| {
        b["session"]["status"] == "failed"
    })
    .await;
    assert_eq!(snap["session"]["summary"], "late verdict");
    let day = test.get("/api/history/sessions/2026-11-20").await.body;
    assert_eq!(day["sessionIds"], json!(["h-2"]));
    let n = std::fs::read_dir(dir.0.join("history/2026-11-20"))
        .unwrap()
        .count();
    assert_eq!(n, 1, "one snapshot per incarnation");
}

#[tokio::test]
async fn bad_dates_and_ids_are_400_and_nothing_is_read_outside_the_archive() {
    let dir = TempDir::new("history-bad");
    // A file next to the archive that a traversal would reach.
    std::fs::write(
        dir.0.join("secret.json"),
        r#"{"epoch":"x","savedAt":"2026-11-20T00:00:00.000Z"}"#,
    )
    .unwrap();
    let test = TestApp::with_config(archived_to(&dir));
    for path in [
        "/api/history/sessions/..",
        "/api/history/sessions/%2E%2E",
        "/api/history/sessions/..%2F..%2Fsecret",
        "/api/history/sessions/%2Fetc%2Fpasswd",
        "/api/history/sessions/2026-11-20%00",
        "/api/history/sessions/2026-02-30",
        "/api/history/sessions/2026-11-20%2F..",
        "/api/history/session/..",
        "/api/history/session/%2E",
        "/api/history/session/..%2Fsecret",
        "/api/history/session/%2Ftmp%2Fsecret",
        "/api/history/session/a%00b",
        "/api/history/session/h-1?date=..",
        "/api/history/session/h-1?date=..%2F..",
        "/api/history/session/h-1?date=%2Fetc",
        "/api/history/dates?limit=0",
        "/api/history/dates?offset=-1",
        "/api/history/dates?bogus=1",
    ] {
        let res = test.get(path).await;
        assert_eq!(res.status, 400, "{path}: {}", res.body);
        assert!(res.body["error"].is_string(), "{path}: {}", res.body);
    }
    let long = format!("/api/history/session/{}", "a".repeat(201));
    assert_eq!(test.get(&long).await.status, 400);
}

#[tokio::test]
async fn history_is_404_when_the_archive_is_off() {
    let test = TestApp::new();
    for path in [
        "/api/history/dates",
        "/api/history/stats",
        "/api/history/session/x",
    ] {
        let res = test.get(path).await;
        assert_eq!(res.status, 404, "{path}");
        assert!(
            res.body["error"]
                .as_str()
                .unwrap()
                .contains("AFW_ARCHIVE=off")
        );
    }
}

#[tokio::test]
async fn cleanup_removes_the_dates_past_retention() {
    let dir = TempDir::new("history-retention");
    let root = dir.0.join("history");
    // The clock reads 2026-11-20; retention 7 keeps 2026-11-14 .. 2026-11-20.
    for (date, id) in [
        ("2026-11-01", "old-1"),
        ("2026-11-13", "old-2"),
        ("2026-11-14", "kept"),
    ] {
        std::fs::create_dir_all(root.join(date)).unwrap();
        let body = json!({"session": {"id": id}, "events": [], "chains": [], "epoch": "e", "savedAt": "2026-11-14T00:00:00.000Z"});
        std::fs::write(root.join(date).join(format!("{id}.json")), body.to_string()).unwrap();
    }
    let test = TestApp::with_config(archived_to(&dir));
    let res = test.post("/api/history/cleanup", json!(null)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["deletedCount"], 2);
    assert_eq!(res.body["deletedSessions"], 2);
    let dates = test.get("/api/history/dates").await.body;
    assert_eq!(dates["dates"], json!(["2026-11-14"]));
}

#[tokio::test]
async fn an_archive_that_cannot_be_written_is_retried_reported_and_never_blocks_writes() {
    let dir = TempDir::new("history-down");
    let root = dir.0.join("history");
    // A file where the archive's directory should be: every write fails.
    std::fs::write(&root, "not a directory").unwrap();
    let test = TestApp::with_config(archived_to(&dir));
    run_session(&test, "h-3").await;
    let health = eventually(&test, "/health", |b| b["archive"]["state"] == "retrying").await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["archive"]["pending"], 1);
    assert!(
        health["archive"]["lastError"]
            .as_str()
            .unwrap()
            .contains("cannot")
    );
    // Writes go on.
    let res = test
        .post("/api/events", json!({"type": "session:started", "sessionId": "h-4", "timestamp": "2026-11-20T14:00:00.000Z"}))
        .await;
    assert_eq!(res.status, 201);
    // The archive comes back: the session is filed on a retry.
    std::fs::remove_file(&root).unwrap();
    eventually(&test, "/api/history/session/h-3", |b| {
        b["session"]["id"] == "h-3"
    })
    .await;
    let health = eventually(&test, "/health", |b| b["archive"]["state"] == "ok").await;
    assert_eq!(health["archive"]["pending"], 0);
}

#[tokio::test]
async fn a_session_gone_from_live_storage_is_served_from_the_archive_marked_archived() {
    let dir = TempDir::new("history-fallback");
    let test = TestApp::with_config(archived_to(&dir));
    run_session(&test, "h-5").await;
    eventually(&test, "/api/history/session/h-5", |b| {
        b["session"]["id"] == "h-5"
    })
    .await;
    let live = test.get("/api/sessions/h-5").await;
    assert_eq!(live.status, 200);
    assert!(live.body.get("archived").is_none());
    let res = test
        .request(axum::http::Method::DELETE, "/api/sessions/h-5", None)
        .await;
    assert_eq!(res.status, 204);
    let gone = test.get("/api/sessions/h-5").await;
    assert_eq!(gone.status, 200, "{}", gone.body);
    assert_eq!(gone.body["archived"], true);
    assert_eq!(gone.body["id"], "h-5");
    assert_eq!(gone.body["status"], "completed");
    assert_eq!(gone.body["chains"][0]["id"], "h-5-1");
    // Everything else of the live session is there, as it was.
    let mut expected = live.body.clone();
    expected["archived"] = json!(true);
    assert_eq!(gone.body, expected);
    assert_eq!(test.get("/api/sessions/never").await.status, 404);
}

/// Waits in real time (a blocking file write finishing) while the paused clock stands.
async fn archived_by_now(test: &TestApp, id: &str) -> Value {
    for _ in 0..500 {
        let res = test.get(&format!("/api/history/session/{id}")).await;
        if res.status == 200 {
            return res.body;
        }
        std::thread::sleep(Duration::from_millis(10));
        tokio::task::yield_now().await;
    }
    panic!("{id} was not archived");
}

#[tokio::test(start_paused = true)]
async fn a_session_that_never_ends_is_archived_before_its_ttl_and_served_after_it() {
    const DAY: Duration = Duration::from_secs(24 * 3600);
    const MINUTE: Duration = Duration::from_secs(60);
    let dir = TempDir::new("history-ttl");
    let test = TestApp::with_config(archived_to(&dir));
    for event in [
        json!({"type": "session:started", "sessionId": "t-1", "timestamp": "2026-11-20T14:00:00.000Z", "cwd": "/w"}),
        json!({"type": "chain:compiled", "sessionId": "t-1", "timestamp": "2026-11-20T14:00:01.000Z", "chainId": "t-1-c", "title": "t", "steps": []}),
    ] {
        assert_eq!(test.post("/api/events", event).await.status, 201);
    }
    // Idle for most of a day: not archived (it is running, and far from its TTL).
    tokio::time::sleep(DAY - 20 * MINUTE).await;
    assert_eq!(test.get("/api/history/session/t-1").await.status, 404);
    // Within the sweeper's lead (15 minutes before the TTL): archived as it stands.
    tokio::time::sleep(8 * MINUTE).await;
    let snap = archived_by_now(&test, "t-1").await;
    assert_eq!(snap["session"]["status"], "in_progress");
    assert_eq!(snap["events"].as_array().unwrap().len(), 2);
    // Expired from live storage: served from the archive.
    tokio::time::sleep(13 * MINUTE).await;
    let gone = test.get("/api/sessions/t-1").await;
    assert_eq!(gone.status, 200, "{}", gone.body);
    assert_eq!(gone.body["archived"], true);
    assert_eq!(gone.body["chains"][0]["id"], "t-1-c");
    assert_eq!(test.get("/api/events/t-1").await.body["count"], 0);
}
