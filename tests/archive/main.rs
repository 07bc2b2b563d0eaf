//! The archive adapters against real storage: the directory adapter and a real PostgreSQL
//! server (started here, killed and restarted), one suite over both, plus the whole path
//! from a session's end to the history routes on PostgreSQL, and two instances on a real
//! Redis, one killed while it archives.

#[allow(dead_code)]
#[path = "../support/binary.rs"]
mod binary;
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
mod instances;
mod pg;
#[allow(dead_code)]
#[path = "../redis/server.rs"]
mod server;

use std::sync::Arc;
use std::time::Duration;

use afw::archive::{Archive, ArchiveError, Date, Page, Put, Snapshot};
use afw::config::{ArchiveSetting, Config, Secret};
use afw::domain::model::{SessionId, Timestamp};
use afw::ports::IdGen;
use serde_json::json;

use pg::PgServer;

/// One archive under test, with what keeps it alive.
enum Backend {
    Dir(std::path::PathBuf),
    Pg(PgServer),
}

impl Backend {
    fn dir() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("afw-archive-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        Self::Dir(path)
    }

    fn setting(&self) -> ArchiveSetting {
        match self {
            Self::Dir(path) => ArchiveSetting::Dir(path.clone()),
            Self::Pg(server) => ArchiveSetting::Postgres(Secret(server.url())),
        }
    }

    fn open(&self) -> Arc<dyn Archive> {
        afw::archive::open(&self.setting(), &Arc::new(IdGen::from_seed(1)))
            .unwrap()
            .unwrap()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Self::Dir(path) = self {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// Runs `suite` over a directory archive and over PostgreSQL.
async fn both<F, Fut>(suite: F)
where
    F: Fn(Arc<dyn Archive>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for backend in [Backend::dir(), Backend::Pg(PgServer::start())] {
        let archive = backend.open();
        eprintln!("suite over {}", archive.kind());
        suite(archive).await;
    }
}

fn snap(id: &str, epoch: &str, date: &str, saved_at: u64) -> Snapshot {
    let body = json!({
        "session": {"id": id}, "events": [{"seq": 1, "type": "session:started"}],
        "chains": [], "epoch": epoch,
        "savedAt": Timestamp(saved_at).to_rfc3339(),
    });
    Snapshot {
        session_id: SessionId::parse(id).unwrap(),
        epoch: epoch.to_owned(),
        date: Date::parse(date).unwrap(),
        saved_at: Timestamp(saved_at),
        body: body.to_string().into_bytes().into(),
    }
}

fn saved_at(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["savedAt"].as_str().unwrap().to_owned()
}

const ALL: Page = Page {
    offset: 0,
    limit: 1000,
};

#[tokio::test]
async fn a_snapshot_is_replaced_only_by_a_newer_one_of_its_incarnation() {
    both(async |a| {
        let id = SessionId::parse("s-1").unwrap();
        assert_eq!(
            a.put(&snap("s-1", "e1", "2026-11-20", 1_000))
                .await
                .unwrap(),
            Put::Created
        );
        assert_eq!(
            a.put(&snap("s-1", "e1", "2026-11-20", 1_000))
                .await
                .unwrap(),
            Put::Stale
        );
        assert_eq!(
            a.put(&snap("s-1", "e1", "2026-11-20", 500)).await.unwrap(),
            Put::Stale
        );
        assert_eq!(
            a.put(&snap("s-1", "e1", "2026-11-20", 2_000))
                .await
                .unwrap(),
            Put::Updated
        );
        let body = a.get(&id, None).await.unwrap().unwrap();
        assert_eq!(saved_at(&body), Timestamp(2_000).to_rfc3339());
        let day = a
            .sessions(Date::parse("2026-11-20").unwrap(), ALL)
            .await
            .unwrap();
        assert_eq!(day.items, std::slice::from_ref(&id));
        assert_eq!(day.total, 1);
        // Another incarnation is another snapshot; the id is listed once, the newest served.
        assert_eq!(
            a.put(&snap("s-1", "e2", "2026-11-20", 3_000))
                .await
                .unwrap(),
            Put::Created
        );
        let day = a
            .sessions(Date::parse("2026-11-20").unwrap(), ALL)
            .await
            .unwrap();
        assert_eq!(day.items, std::slice::from_ref(&id));
        let body = a.get(&id, None).await.unwrap().unwrap();
        assert_eq!(saved_at(&body), Timestamp(3_000).to_rfc3339());
        assert!(
            a.get(&id, Date::parse("2026-11-21"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            a.get(&SessionId::parse("nope").unwrap(), None)
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}

#[tokio::test]
async fn dates_are_newest_first_and_listings_page() {
    both(async |a| {
        for (id, date) in [
            ("a", "2026-11-18"),
            ("b", "2026-11-20"),
            ("c", "2026-11-19"),
            ("d", "2026-11-20"),
        ] {
            a.put(&snap(id, "e", date, 1)).await.unwrap();
        }
        let first = a
            .dates(Page {
                offset: 0,
                limit: 2,
            })
            .await
            .unwrap();
        let names: Vec<String> = first.items.iter().map(Date::to_string).collect();
        assert_eq!(names, ["2026-11-20", "2026-11-19"]);
        assert_eq!(first.total, 3);
        let rest = a
            .dates(Page {
                offset: 2,
                limit: 2,
            })
            .await
            .unwrap();
        assert_eq!(rest.items, [Date::parse("2026-11-18").unwrap()]);
        let day = a
            .sessions(
                Date::parse("2026-11-20").unwrap(),
                Page {
                    offset: 1,
                    limit: 5,
                },
            )
            .await
            .unwrap();
        assert_eq!(day.items, [SessionId::parse("d").unwrap()]);
        assert_eq!(day.total, 2);
        let stats = a.stats().await.unwrap();
        assert_eq!((stats.dates, stats.sessions), (3, 4));
        assert_eq!(stats.oldest, Date::parse("2026-11-18"));
        assert_eq!(stats.newest, Date::parse("2026-11-20"));
        let cleaned = a.cleanup(Date::parse("2026-11-20").unwrap()).await.unwrap();
        assert_eq!((cleaned.dates, cleaned.sessions), (2, 2));
        let left = a.dates(ALL).await.unwrap();
        assert_eq!(left.items, [Date::parse("2026-11-20").unwrap()]);
        assert_eq!(
            a.cleanup(Date::parse("2026-11-20").unwrap())
                .await
                .unwrap()
                .dates,
            0
        );
    })
    .await;
}

#[tokio::test]
async fn postgres_down_is_unavailable_within_the_timeout_and_recovers_by_itself() {
    let mut server = PgServer::start();
    let url = server.url();
    let archive = afw::archive::open(
        &ArchiveSetting::Postgres(Secret(url)),
        &Arc::new(IdGen::from_seed(2)),
    )
    .unwrap()
    .unwrap();
    archive
        .put(&snap("p-1", "e", "2026-11-20", 1))
        .await
        .unwrap();
    server.kill();
    let began = std::time::Instant::now();
    let err = archive
        .put(&snap("p-1", "e", "2026-11-20", 2))
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Unavailable(_)), "{err}");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert!(!err.to_string().contains("password"), "{err}");
    server.restart();
    let mut put = Err(err);
    for _ in 0..50 {
        put = archive.put(&snap("p-1", "e", "2026-11-20", 2)).await;
        if put.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(put.unwrap(), Put::Updated);
}

#[tokio::test]
async fn instances_starting_together_apply_each_migration_once() {
    let server = PgServer::start();
    let open = || {
        afw::archive::open(
            &ArchiveSetting::Postgres(Secret(server.url())),
            &Arc::new(IdGen::from_seed(3)),
        )
        .unwrap()
        .unwrap()
    };
    let (a, b, c) = (open(), open(), open());
    let (x, y, z) = tokio::join!(a.ping(), b.ping(), c.ping());
    x.unwrap();
    y.unwrap();
    z.unwrap();
    let (client, conn) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query("SELECT version FROM afw_migrations ORDER BY version", &[])
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, [1]);
}

#[tokio::test]
async fn an_ended_session_reaches_the_history_routes_through_postgres() {
    let server = PgServer::start();
    let test = helpers::TestApp::with_config(Config {
        archive: ArchiveSetting::Postgres(Secret(server.url())),
        ..Config::default()
    });
    for event in [
        json!({"type": "session:started", "sessionId": "pg-1", "timestamp": "2026-11-20T14:00:00.000Z"}),
        json!({"type": "session:ended", "sessionId": "pg-1", "timestamp": "2026-11-20T14:00:03.000Z"}),
    ] {
        assert_eq!(test.post("/api/events", event).await.status, 201);
    }
    let mut snap = None;
    for _ in 0..200 {
        let res = test.get("/api/history/session/pg-1").await;
        if res.status == 200 {
            snap = Some(res.body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let snap = snap.expect("archived");
    assert_eq!(snap["session"]["status"], "completed");
    assert_eq!(snap["events"].as_array().unwrap().len(), 2);
    let dates = test.get("/api/history/dates").await.body;
    assert_eq!(dates, json!({"dates": ["2026-11-20"], "total": 1}));
    let stats = test.get("/api/history/stats").await.body;
    assert_eq!(stats["archive"], "postgres");
    assert_eq!(stats["totalSessions"], 1);
    let health = test.get("/health").await.body;
    assert_eq!(health["archive"]["kind"], "postgres");
    assert_eq!(health["archive"]["state"], "ok");
}
