//! Building one afw instance from its ports, and serving it.
//!
//! [`build`] is the single place where an instance is assembled: production (`main.rs`),
//! the in-process tests and the turmoil simulation all call it, and differ only in the
//! [`Ports`] they pass and the listener they serve on.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;

use crate::archive::Archive;
use crate::archive::archiver::Archiver;
use crate::bus::Bus;
use crate::config::Config;
use crate::http::guard::Guard;
use crate::http::{AppState, Shared};
use crate::metrics::Metrics;
use crate::ports::{Clock, Connector, IdGen};
use crate::storage::Store;
use crate::storage::memory::MemoryStore;
use crate::storage::redis::bridge::BridgeStatus;
use crate::storage::redis::{LinkTimeouts, RedisLink, RedisStore, RedisTarget, RedisUrlError};

/// What differs between production, tests and simulation.
#[derive(Clone)]
pub struct Ports {
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<IdGen>,
    /// Dials Redis (only used with `REDIS_URL`).
    pub connector: Arc<dyn Connector>,
    /// An archive to file snapshots in instead of the one `AFW_ARCHIVE` names (the
    /// simulation's in-memory archive host); `None`: as configured.
    pub archive: Option<Arc<dyn Archive>>,
}

impl Ports {
    /// The production ports: the OS clock, OS-seeded ids, tokio TCP.
    pub fn production() -> Self {
        Self {
            clock: Arc::new(crate::ports::SystemClock),
            ids: Arc::new(IdGen::from_os()),
            connector: Arc::new(crate::ports::TcpConnector),
            archive: None,
        }
    }
}

/// Errors while assembling an instance.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    RedisUrl(#[from] RedisUrlError),
    #[error(transparent)]
    Tls(#[from] crate::ports::tls::TlsError),
    #[error(transparent)]
    Guard(#[from] crate::http::guard::BadSetting),
    #[error(transparent)]
    ArchiveUrl(#[from] crate::archive::postgres::PgUrlError),
}

/// One assembled instance: its router and its shared state.
pub struct App {
    pub state: AppState,
    pub router: Router,
}

/// Builds an instance from its configuration and ports. Must run inside a tokio runtime
/// (the memory store spawns its purge task).
pub fn build(config: Config, ports: Ports) -> Result<App, BuildError> {
    let guard = Guard::from_config(&config)?;
    let metrics = Arc::new(Metrics::new());
    let bus = Arc::new(Bus::counting(metrics.data.events_broadcast.clone()));
    let instance_id = config
        .instance_id
        .clone()
        .unwrap_or_else(|| format!("afw-{}", ports.ids.suffix()));
    let (shutdown, _) = watch::channel(false);
    // An empty REDIS_URL (as `REDIS_URL=` in a compose file) means "not set".
    let redis_url = config.redis_url.as_deref().filter(|u| !u.trim().is_empty());
    let (store, bridge): (Arc<dyn Store>, _) = match redis_url {
        None => (
            Arc::new(MemoryStore::new(
                Arc::clone(&ports.clock),
                config.store_limits(),
                Arc::clone(&bus),
                Arc::clone(&ports.ids),
            )),
            None,
        ),
        Some(url) => {
            let target = RedisTarget::parse(url)?;
            let timeouts = LinkTimeouts {
                op: Duration::from_millis(config.redis_timeout_ms.max(1)),
                ..LinkTimeouts::default()
            };
            let connector: Arc<dyn Connector> = if target.tls {
                Arc::new(crate::ports::tls::TlsConnector::new(
                    Arc::clone(&ports.connector),
                    config.redis_ca_file.as_deref(),
                )?)
            } else {
                Arc::clone(&ports.connector)
            };
            let link = Arc::new(RedisLink::new(
                connector,
                target,
                timeouts,
                Arc::clone(&ports.ids),
                metrics.redis.clone(),
            ));
            let store = RedisStore::new(
                Arc::clone(&link),
                &config.redis_prefix,
                &instance_id,
                config.store_limits(),
                Arc::clone(&ports.clock),
            );
            let status = Arc::new(BridgeStatus::default());
            tokio::spawn(crate::storage::redis::figures::run(
                Arc::clone(&link),
                Arc::clone(&metrics.redis.figures),
                shutdown.subscribe(),
            ));
            tokio::spawn(crate::storage::redis::bridge::run(
                link,
                store.channel().to_owned(),
                Arc::clone(&bus),
                Arc::clone(&status),
                shutdown.subscribe(),
            ));
            (Arc::new(store), Some(status))
        }
    };
    let archive = match ports.archive {
        Some(archive) => Some(archive),
        None => crate::archive::open(&config.archive, &ports.ids)?,
    };
    let archiver = archive.map(|archive| {
        let archiver = Archiver::new(archive, Arc::clone(&metrics));
        tokio::spawn(Arc::clone(&archiver).run(
            Arc::clone(&store),
            Arc::clone(&ports.clock),
            shutdown.subscribe(),
        ));
        let plan = crate::archive::archiver::SweepPlan {
            every: Duration::from_secs(config.archive_sweep_secs.max(1)),
            ttl_ms: config.store_limits().session_ttl_ms,
            retention_days: config.archive_retention_days,
        };
        tokio::spawn(Arc::clone(&archiver).sweep(
            Arc::clone(&store),
            Arc::clone(&ports.clock),
            plan,
            shutdown.subscribe(),
        ));
        archiver
    });
    let shared = Shared {
        archiver,
        store,
        bus,
        clock: ports.clock,
        ids: ports.ids,
        instance_id,
        started: tokio::time::Instant::now(),
        ws_clients: AtomicUsize::new(0),
        next_client_id: AtomicU64::new(1),
        shutdown,
        bridge,
        guard,
        config,
        metrics,
    };
    let state = AppState::new(shared);
    let router = crate::http::router(&state);
    Ok(App { state, router })
}

impl App {
    pub fn backend(&self) -> &'static str {
        self.state.store().backend()
    }

    /// Serves until `shutdown` resolves, then (within `AFW_SHUTDOWN_GRACE_SECS`) stops
    /// accepting, answers `/ready` with 503 and waiting long polls with `available: false`,
    /// lets requests finish, closes WebSocket clients with 1001 and waits for them to go.
    pub async fn serve<L>(
        self,
        listener: L,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()>
    where
        L: axum::serve::Listener<Addr = std::net::SocketAddr>,
    {
        let state = self.state.clone();
        let stop = state.shared().shutdown.subscribe();
        tokio::spawn(async move {
            shutdown.await;
            state.shared().shutdown.send_replace(true);
        });
        let limits = crate::server::Limits::from_config(self.state.config());
        let deadline = crate::server::serve(listener, self.router, limits, stop).await;
        self.state.shared().shutdown.send_replace(true);
        while self.state.shared().ws_clients.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}
