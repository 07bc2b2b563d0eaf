//! Two afw binaries sharing a real Redis and a real PostgreSQL: one is killed (SIGKILL)
//! while it writes a session's snapshot, and the other files it: exactly one snapshot,
//! with every event.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::binary::Binary;
use crate::pg::PgServer;
use crate::server::RedisServer;

/// One afw binary on a real Redis and PostgreSQL, sweeping every second.
struct Instance(Binary);

impl Instance {
    fn start(id: &str, redis: &RedisServer, pg: &PgServer) -> Self {
        Self(Binary::start(
            id,
            &[
                ("REDIS_URL", redis.url()),
                ("AFW_ARCHIVE", pg.url()),
                ("AFW_ARCHIVE_SWEEP_SECS", "1".into()),
                // No retention DELETE: the only write waiting on the table is the snapshot's.
                ("AFW_ARCHIVE_RETENTION_DAYS", "0".into()),
                ("AFW_INSTANCE_ID", id.into()),
            ],
        ))
    }

    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.0.request(method, path, body)
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.0.get(path)
    }

    fn kill(&mut self) {
        self.0.kill();
    }
}

/// Waits (`within` at most) until `done` holds.
async fn until(within: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_filed_once_when_its_writer_is_killed_mid_archive() {
    let redis = RedisServer::start();
    let pg = PgServer::start();
    let mut a = Instance::start("afw-a", &redis, &pg);
    let b = Instance::start("afw-b", &redis, &pg);
    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // The instances apply the migrations at start. Then writes to the table wait for
    // this transaction (reads do not).
    until(Duration::from_secs(10), "the migrations", async || {
        client
            .query_opt("SELECT 1 FROM afw_migrations WHERE version = 1", &[])
            .await
            .is_ok_and(|row| row.is_some())
    })
    .await;
    client
        .batch_execute("BEGIN; LOCK TABLE afw_snapshots IN EXCLUSIVE MODE")
        .await
        .unwrap();

    let sid = "killed-writer-1";
    let mut events = vec![json!({"type": "session:started", "sessionId": sid,
        "timestamp": "2026-11-20T14:00:00.000Z", "cwd": "/work", "user": "alice"})];
    for i in 0..198 {
        events.push(json!({"type": "terminal:output", "sessionId": sid,
            "timestamp": "2026-11-20T14:00:01.000Z", "output": format!("line {i}"),
            "eventId": format!("out-{i}")}));
    }
    events.push(json!({"type": "session:ended", "sessionId": sid,
        "timestamp": "2026-11-20T14:00:02.000Z"}));
    let body = json!({"events": events}).to_string();
    let (status, answer) = a.request("POST", "/api/events/batch", &body);
    assert_eq!(status, 201, "{answer}");

    // A is mid-archive: it holds the session's lease and its INSERT waits on the lock.
    let lease = format!("afw:lease:archive:{sid}");
    until(
        Duration::from_secs(10),
        "A to hold the lease and wait on the table",
        async || {
            let waiting = client
                .query_one(
                    // An INSERT waits while it is parsed, so the query column still shows
                    // the connection's previous statement: count afw's waiting connections.
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE application_name = 'afw' AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0);
            redis.cli(&["GET", &lease]).trim() == "afw-a" && waiting == 1
        },
    )
    .await;
    assert!(
        !redis
            .cli(&["ZSCORE", "afw:archive:due", sid])
            .trim()
            .is_empty()
    );
    a.kill();
    // Past A's statement timeout (3 s): its INSERT is cancelled, not left to commit.
    tokio::time::sleep(Duration::from_secs(4)).await;
    client.batch_execute("COMMIT").await.unwrap();

    // B finds the session still due once a lease term has passed, takes the lease A can no
    // longer renew, and files it.
    let path = format!("/api/history/session/{sid}");
    until(
        Duration::from_secs(60),
        "B to file the snapshot",
        async || b.get(&path).0 == 200,
    )
    .await;
    let (_, snapshot) = b.get(&path);
    let snapshot: Value = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(snapshot["session"]["status"], "completed");
    let got = snapshot["events"].as_array().unwrap();
    assert_eq!(got.len(), 200);
    let seqs: Vec<u64> = got.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());

    let rows = client
        .query_one(
            "SELECT count(*) FROM afw_snapshots WHERE session_id = $1",
            &[&sid],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(rows, 1, "exactly one snapshot");
    let metrics = b.get("/metrics").1;
    assert_eq!(
        counter(&metrics, "afw_archive_snapshots_total{outcome=\"created\"}"),
        1,
        "{metrics}"
    );
    // Filed: no longer due, the lease given back.
    until(
        Duration::from_secs(5),
        "the due mark to clear",
        async || {
            redis
                .cli(&["ZSCORE", "afw:archive:due", sid])
                .trim()
                .is_empty()
        },
    )
    .await;
    assert!(redis.cli(&["GET", &lease]).trim().is_empty());
    // B's later sweeps leave it alone: one snapshot still, created once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics = b.get("/metrics").1;
    assert_eq!(
        counter(&metrics, "afw_archive_snapshots_total"),
        1,
        "{metrics}"
    );
}
