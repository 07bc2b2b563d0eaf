//! The PostgreSQL archive (`AFW_ARCHIVE=postgres://...`): the shared home of history when
//! several instances run.
//!
//! One table, `afw_snapshots`, keyed by session id and epoch; a write is an upsert that
//! replaces a snapshot only with a newer `savedAt`, so any number of writers converge.
//! Migrations are versioned (`afw_migrations`) and applied under an advisory lock before
//! the first use, so instances starting together apply each once. Every call is bounded
//! (connect, pool wait, statement and overall timeouts) and a database that is down is
//! [`ArchiveError::Unavailable`], never a hang. This adapter must not serve HTTP or read
//! the live store, and never logs or reports the URL's password.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

use super::{
    Archive, ArchiveError, ArchiveFuture, Cleaned, Date, Listing, Page, Put, Snapshot, Stats,
};
use crate::domain::model::SessionId;

/// Each migration once, in order; never edit one that has shipped, add the next.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE afw_snapshots (
        session_id  text    NOT NULL,
        epoch       text    NOT NULL,
        date        date    NOT NULL,
        saved_at_ms bigint  NOT NULL,
        body        json    NOT NULL,
        PRIMARY KEY (session_id, epoch)
    );
    CREATE INDEX afw_snapshots_by_date ON afw_snapshots (date, session_id);",
)];

/// The advisory lock the migrations run under (any constant of afw's own).
const MIGRATION_LOCK: i64 = 0x0061_6677_6172_6368;

/// How long any one archive call may take, pool wait included.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const POOL_SIZE: usize = 8;

pub(crate) struct PgArchive {
    pool: Pool,
    /// `host:port/db`, for messages (no user, no password).
    target: String,
    migrated: OnceCell<()>,
}

/// Why an `AFW_ARCHIVE` PostgreSQL URL was refused.
#[derive(Debug, thiserror::Error)]
#[error("AFW_ARCHIVE is not a usable PostgreSQL URL: {0}")]
pub struct PgUrlError(String);

impl PgArchive {
    /// A pool over `url`; nothing is dialled until the first call.
    pub(crate) fn new(url: &str) -> Result<Self, PgUrlError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| PgUrlError(e.to_string()))?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .application_name("afw")
            .options(format!("-c statement_timeout={}", CALL_TIMEOUT.as_millis()));
        let target = describe(&config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CALL_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| PgUrlError(e.to_string()))?;
        Ok(Self {
            pool,
            target,
            migrated: OnceCell::new(),
        })
    }

    fn down(&self, e: impl std::fmt::Display) -> ArchiveError {
        ArchiveError::Unavailable(format!("postgres {}: {e}", self.target))
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, ArchiveError> {
        let client = self.pool.get().await.map_err(|e| self.down(e))?;
        self.migrated
            .get_or_try_init(|| migrate(&client, &self.target))
            .await?;
        Ok(client)
    }

    /// Runs `f` with a client, within [`CALL_TIMEOUT`].
    async fn call<T>(
        &self,
        f: impl AsyncFnOnce(&deadpool_postgres::Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, ArchiveError> {
        let work = async {
            let client = self.client().await?;
            f(&client).await.map_err(|e| self.down(e))
        };
        tokio::time::timeout(CALL_TIMEOUT, work)
            .await
            .map_err(|_| self.down(format!("no answer within {CALL_TIMEOUT:?}")))?
    }
}

fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

async fn migrate(client: &deadpool_postgres::Client, target: &str) -> Result<(), ArchiveError> {
    let down = |e: tokio_postgres::Error| {
        ArchiveError::Unavailable(format!("postgres {target}: migrating: {e}"))
    };
    // `Client` derefs to tokio-postgres's client; a transaction needs it mutable, so the
    // lock and the steps run as one batch-free sequence on a plain transaction block.
    client.batch_execute("BEGIN").await.map_err(down)?;
    let steps = async {
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS afw_migrations (
                    version    integer     PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )",
            )
            .await?;
        let row = client
            .query_one("SELECT coalesce(max(version), 0) FROM afw_migrations", &[])
            .await?;
        let current: i32 = row.get(0);
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            client.batch_execute(sql).await?;
            client
                .execute(
                    "INSERT INTO afw_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await?;
        }
        Ok::<i32, tokio_postgres::Error>(current)
    };
    match steps.await {
        Ok(current) => {
            client.batch_execute("COMMIT").await.map_err(down)?;
            let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
            if current > known {
                return Err(ArchiveError::Unavailable(format!(
                    "postgres {target}: schema version {current} is newer than this afw knows ({known})"
                )));
            }
            Ok(())
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(down(e))
        }
    }
}

fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn date_of(text: &str, target: &str) -> Result<Date, ArchiveError> {
    Date::parse(text)
        .ok_or_else(|| ArchiveError::Corrupt(format!("postgres {target}: date {text:?}")))
}

fn session_of(text: &str, target: &str) -> Result<SessionId, ArchiveError> {
    SessionId::parse(text)
        .map_err(|_| ArchiveError::Corrupt(format!("postgres {target}: session id {text:?}")))
}

impl Archive for Arc<PgArchive> {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn ping(&self) -> ArchiveFuture<'_, ()> {
        Box::pin(self.call(async |c| c.batch_execute("SELECT 1").await))
    }

    fn put<'a>(&'a self, s: &'a Snapshot) -> ArchiveFuture<'a, Put> {
        Box::pin(async move {
            let body = std::str::from_utf8(&s.body)
                .map_err(|e| ArchiveError::Corrupt(format!("snapshot is not UTF-8: {e}")))?;
            let (date, saved) = (
                s.date.to_string(),
                i64::try_from(s.saved_at.0).unwrap_or(i64::MAX),
            );
            let row = self
                .call(async |c| {
                    c.query_opt(
                        "INSERT INTO afw_snapshots (session_id, epoch, date, saved_at_ms, body)
                         VALUES ($1, $2, $3::text::date, $4, $5::text::json)
                         ON CONFLICT (session_id, epoch) DO UPDATE
                           SET body = EXCLUDED.body, saved_at_ms = EXCLUDED.saved_at_ms
                           WHERE afw_snapshots.saved_at_ms < EXCLUDED.saved_at_ms
                         RETURNING (xmax = 0) AS created",
                        &[&s.session_id.as_str(), &s.epoch, &date, &saved, &body],
                    )
                    .await
                })
                .await?;
            Ok(match row.map(|r| r.get::<_, bool>(0)) {
                None => Put::Stale,
                Some(true) => Put::Created,
                Some(false) => Put::Updated,
            })
        })
    }

    fn dates(&self, page: Page) -> ArchiveFuture<'_, Listing<Date>> {
        Box::pin(async move {
            let (rows, total) = self
                .call(async |c| {
                    let rows = c
                        .query(
                            "SELECT DISTINCT to_char(date, 'YYYY-MM-DD') AS d FROM afw_snapshots
                             ORDER BY d DESC LIMIT $1 OFFSET $2",
                            &[&to_i64(page.limit), &to_i64(page.offset)],
                        )
                        .await?;
                    let total = c
                        .query_one("SELECT count(DISTINCT date) FROM afw_snapshots", &[])
                        .await?;
                    Ok((rows, total.get::<_, i64>(0)))
                })
                .await?;
            let items = rows
                .iter()
                .map(|r| date_of(r.get(0), &self.target))
                .collect::<Result<_, _>>()?;
            Ok(Listing {
                items,
                total: to_usize(total),
            })
        })
    }

    fn sessions(&self, date: Date, page: Page) -> ArchiveFuture<'_, Listing<SessionId>> {
        Box::pin(async move {
            let date = date.to_string();
            let (rows, total) = self
                .call(async |c| {
                    let rows = c
                        .query(
                            "SELECT DISTINCT session_id FROM afw_snapshots
                             WHERE date = $1::text::date
                             ORDER BY session_id LIMIT $2 OFFSET $3",
                            &[&date, &to_i64(page.limit), &to_i64(page.offset)],
                        )
                        .await?;
                    let total = c
                        .query_one(
                            "SELECT count(DISTINCT session_id) FROM afw_snapshots
                             WHERE date = $1::text::date",
                            &[&date],
                        )
                        .await?;
                    Ok((rows, total.get::<_, i64>(0)))
                })
                .await?;
            let items = rows
                .iter()
                .map(|r| session_of(r.get(0), &self.target))
                .collect::<Result<_, _>>()?;
            Ok(Listing {
                items,
                total: to_usize(total),
            })
        })
    }

    fn get<'a>(
        &'a self,
        id: &'a SessionId,
        date: Option<Date>,
    ) -> ArchiveFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            let date = date.map(|d| d.to_string());
            let row = self
                .call(async |c| {
                    c.query_opt(
                        "SELECT body::text FROM afw_snapshots
                         WHERE session_id = $1 AND ($2::text IS NULL OR date = $2::text::date)
                         ORDER BY saved_at_ms DESC LIMIT 1",
                        &[&id.as_str(), &date],
                    )
                    .await
                })
                .await?;
            Ok(row.map(|r| Bytes::from(r.get::<_, String>(0))))
        })
    }

    fn stats(&self) -> ArchiveFuture<'_, Stats> {
        Box::pin(async move {
            let row = self
                .call(async |c| {
                    c.query_one(
                        "SELECT count(DISTINCT date),
                                (SELECT count(*) FROM (SELECT DISTINCT date, session_id
                                                       FROM afw_snapshots) s),
                                to_char(min(date), 'YYYY-MM-DD'),
                                to_char(max(date), 'YYYY-MM-DD')
                         FROM afw_snapshots",
                        &[],
                    )
                    .await
                })
                .await?;
            let day = |i: usize| -> Result<Option<Date>, ArchiveError> {
                row.get::<_, Option<&str>>(i)
                    .map(|t| date_of(t, &self.target))
                    .transpose()
            };
            Ok(Stats {
                dates: to_usize(row.get(0)),
                sessions: to_usize(row.get(1)),
                oldest: day(2)?,
                newest: day(3)?,
            })
        })
    }

    fn cleanup(&self, before: Date) -> ArchiveFuture<'_, Cleaned> {
        Box::pin(async move {
            let before = before.to_string();
            let row = self
                .call(async |c| {
                    c.query_one(
                        "WITH gone AS (DELETE FROM afw_snapshots WHERE date < $1::text::date
                                       RETURNING date, session_id)
                         SELECT count(DISTINCT date),
                                (SELECT count(*) FROM (SELECT DISTINCT date, session_id
                                                       FROM gone) s)
                         FROM gone",
                        &[&before],
                    )
                    .await
                })
                .await?;
            Ok(Cleaned {
                dates: to_usize(row.get(0)),
                sessions: to_usize(row.get(1)),
            })
        })
    }
}
