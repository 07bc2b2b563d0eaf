//! The connection layer: where Redis is (`REDIS_URL`, parsed once, its password never
//! printed) and one multiplexed connection to it, dialled through the injected
//! [`Connector`] (never `redis::Client`), with bounded timeouts.
//!
//! While Redis is unreachable every query fails fast with [`StoreError::Unavailable`];
//! redials back off with jitter from the injected [`IdGen`]. Refusals a healthy link can
//! answer with (OOM, BUSY, READONLY, LOADING) become 503s too, logged at most every 10 s.
//! Nothing here may know keys, scripts or JSON.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo};

use crate::metrics::{CommandLabels, KindLabels, RedisMetrics};
use crate::ports::{Connector, IdGen};
use crate::storage::StoreError;
use crate::sync::lock;

/// Where Redis is and how to talk to it, parsed from `REDIS_URL`.
#[derive(Debug, Clone)]
pub(crate) struct RedisTarget {
    pub host: String,
    pub port: u16,
    pub info: RedisConnectionInfo,
    /// `rediss://`: the connection is TLS.
    pub tls: bool,
}

/// Why a `REDIS_URL` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RedisUrlError {
    #[error("REDIS_URL is not a valid Redis URL: {0}")]
    Invalid(String),
    #[error(
        "REDIS_URL asks for #insecure TLS; afw always verifies the server: give your CA in \
         AFW_REDIS_CA_FILE instead"
    )]
    Insecure,
    #[error("REDIS_URL points to a Unix socket, which afw does not support; use redis://host:port")]
    UnixUnsupported,
}

impl RedisTarget {
    pub(crate) fn parse(url: &str) -> Result<Self, RedisUrlError> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "rediss" | "valkeys" => true,
            "unix" | "redis+unix" => return Err(RedisUrlError::UnixUnsupported),
            _ => false,
        };
        if url.contains("#insecure") {
            return Err(RedisUrlError::Insecure);
        }
        // TLS is ours (the connector), not the redis crate's: parse the rest as redis://.
        let url = if tls {
            format!("redis://{rest}")
        } else {
            url.to_owned()
        };
        let parsed = redis::IntoConnectionInfo::into_connection_info(url.as_str())
            .map_err(|e| RedisUrlError::Invalid(e.to_string()))?;
        let (host, port) = match parsed.addr() {
            redis::ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            redis::ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port),
            _ => return Err(RedisUrlError::UnixUnsupported),
        };
        let settings = parsed.redis_settings();
        let mut info = RedisConnectionInfo::default()
            .set_db(settings.db())
            .set_skip_set_lib_name();
        if let Some(user) = settings.username() {
            info = info.set_username(user);
        }
        if let Some(password) = settings.password() {
            info = info.set_password(password);
        }
        Ok(Self {
            host,
            port,
            info,
            tls,
        })
    }

    /// `redis[s]://host:port/db`, without credentials, for logs.
    pub(crate) fn describe(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{}:{}/{}", self.host, self.port, self.info.db())
    }
}

/// Timeouts and retry pacing of the connection layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkTimeouts {
    /// Longest wait for one command's answer, and for a new connection.
    pub op: Duration,
    /// First redial delay after a failure; doubles up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for LinkTimeouts {
    fn default() -> Self {
        Self {
            op: Duration::from_millis(800),
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

#[derive(Default)]
struct LinkState {
    conn: Option<MultiplexedConnection>,
    failures: u32,
    /// No dial before this instant (requests fail fast meanwhile).
    retry_at: Option<tokio::time::Instant>,
    /// When a refusal (OOM, BUSY, ...) was last logged: at most one line per 10 s.
    refusal_logged: Option<tokio::time::Instant>,
}

/// One multiplexed connection, redialled on failure.
pub(crate) struct RedisLink {
    connector: Arc<dyn Connector>,
    target: RedisTarget,
    timeouts: LinkTimeouts,
    ids: Arc<IdGen>,
    state: Mutex<LinkState>,
    /// One dial at a time.
    dialing: tokio::sync::Mutex<()>,
    metrics: RedisMetrics,
}

pub(super) fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// Why Redis is not usable, in words fit for a response body (no Redis error text).
pub(super) fn public_reason(e: &StoreError) -> String {
    match e {
        StoreError::Unavailable(why) if why.starts_with("redis refuses") => why.clone(),
        StoreError::Unavailable(_) => "redis is unreachable".to_owned(),
        _ => "redis answered with an error".to_owned(),
    }
}

/// Redis answers, but refuses to do the work for now: out of memory under `noeviction`, a
/// script running too long, a read-only replica, a data set still loading after a restart.
/// Transient from the client's point of view: 503 with `Retry-After`, never 500.
pub(super) fn refusal(e: &redis::RedisError) -> Option<&'static str> {
    match e.code()? {
        "OOM" => Some("OOM"),
        "BUSY" => Some("BUSY"),
        "READONLY" => Some("READONLY"),
        "LOADING" => Some("LOADING"),
        "MASTERDOWN" => Some("MASTERDOWN"),
        "NOREPLICAS" => Some("NOREPLICAS"),
        _ => None,
    }
}

impl RedisLink {
    pub(crate) fn new(
        connector: Arc<dyn Connector>,
        target: RedisTarget,
        timeouts: LinkTimeouts,
        ids: Arc<IdGen>,
        metrics: RedisMetrics,
    ) -> Self {
        Self {
            connector,
            target,
            timeouts,
            ids,
            state: Mutex::new(LinkState::default()),
            dialing: tokio::sync::Mutex::new(()),
            metrics,
        }
    }

    /// The Redis families of this instance's metrics.
    pub(crate) fn metrics(&self) -> &RedisMetrics {
        &self.metrics
    }

    fn count_error(&self, kind: &'static str) {
        self.metrics
            .errors
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    fn observe(&self, command: String, started: tokio::time::Instant) {
        self.metrics
            .command_latency
            .get_or_create(&CommandLabels { command })
            .observe(started.elapsed().as_secs_f64());
    }

    pub(crate) fn target(&self) -> &RedisTarget {
        &self.target
    }

    pub(crate) fn timeouts(&self) -> LinkTimeouts {
        self.timeouts
    }

    pub(crate) fn connector(&self) -> &Arc<dyn Connector> {
        &self.connector
    }

    /// The jittered delay before the `failures`-th redial: half to all of the doubled base.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let exp = self
            .timeouts
            .base_backoff
            .saturating_mul(1 << failures.min(16))
            .min(self.timeouts.max_backoff);
        let half = exp / 2;
        let jitter = self.ids.next_u64() % (half.as_millis() as u64 + 1);
        half + Duration::from_millis(jitter)
    }

    /// A new session's epoch, from the injected RNG.
    pub(crate) fn draw_epoch(&self) -> String {
        self.ids.suffix()
    }

    /// A random pause length in `0..=max` ms, from the injected RNG.
    pub(crate) fn jitter_ms(&self, max: u64) -> u64 {
        self.ids.next_u64() % (max + 1)
    }

    async fn dial(&self) -> Result<MultiplexedConnection, String> {
        let io = self
            .connector
            .connect(&self.target.host, self.target.port)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let cfg = AsyncConnectionConfig::new().set_response_timeout(Some(self.timeouts.op));
        let (conn, driver) = MultiplexedConnection::new_with_config(&self.target.info, io, cfg)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(driver);
        Ok(conn)
    }

    async fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        if let Some(conn) = lock(&self.state).conn.clone() {
            return Ok(conn);
        }
        let _one_dial = self.dialing.lock().await;
        {
            let state = lock(&self.state);
            if let Some(conn) = state.conn.clone() {
                return Ok(conn);
            }
            if state
                .retry_at
                .is_some_and(|at| tokio::time::Instant::now() < at)
            {
                return Err(StoreError::Unavailable("redis is unreachable".into()));
            }
        }
        match tokio::time::timeout(self.timeouts.op, self.dial()).await {
            Ok(Ok(conn)) => {
                let mut state = lock(&self.state);
                if state.failures > 0 {
                    tracing::info!(redis = %self.target.describe(), "redis connection restored");
                } else {
                    tracing::info!(redis = %self.target.describe(), "redis connected");
                }
                state.failures = 0;
                state.retry_at = None;
                state.conn = Some(conn.clone());
                Ok(conn)
            }
            outcome => {
                let why = match outcome {
                    Ok(Err(e)) => e,
                    _ => "connect timed out".to_owned(),
                };
                self.count_error("connection");
                self.failed(&why);
                Err(StoreError::Unavailable(why))
            }
        }
    }

    fn failed(&self, why: &str) {
        let mut state = lock(&self.state);
        state.conn = None;
        state.failures = state.failures.saturating_add(1);
        let delay = self.backoff(state.failures - 1);
        state.retry_at = Some(tokio::time::Instant::now() + delay);
        if state.failures == 1 {
            tracing::warn!(redis = %self.target.describe(), error = %why, "redis unavailable; retrying with backoff");
        }
    }

    fn log_refusal(&self, code: &str, e: &redis::RedisError) {
        let now = tokio::time::Instant::now();
        let mut state = lock(&self.state);
        if state
            .refusal_logged
            .is_none_or(|t| now >= t + Duration::from_secs(10))
        {
            state.refusal_logged = Some(now);
            drop(state);
            tracing::warn!(code, error = %e, "redis refuses commands (answering 503)");
        }
    }

    /// Runs one script invocation (`name` labels its latency) with the operation timeout.
    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        name: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        let started = tokio::time::Instant::now();
        let outcome = tokio::time::timeout(self.timeouts.op, inv.invoke_async(&mut conn)).await;
        self.observe(format!("script:{name}"), started);
        self.settle(outcome)
    }

    /// Runs one command with the operation timeout.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        let started = tokio::time::Instant::now();
        let outcome = tokio::time::timeout(self.timeouts.op, cmd.query_async(&mut conn)).await;
        self.observe(command_name(cmd), started);
        self.settle(outcome)
    }

    /// Maps a bounded Redis call's outcome to the store's errors; a connection failure or
    /// timeout drops the connection so the next call redials.
    fn settle<T>(
        &self,
        outcome: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, StoreError> {
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if is_connection_error(&e) => {
                self.count_error("connection");
                self.failed(&e.to_string());
                Err(StoreError::Unavailable(e.to_string()))
            }
            Ok(Err(e)) => match refusal(&e) {
                Some(code) => {
                    self.count_error("refused");
                    self.log_refusal(code, &e);
                    Err(StoreError::Unavailable(format!(
                        "redis refuses commands ({code})"
                    )))
                }
                None => {
                    self.count_error("reply");
                    Err(StoreError::Corrupt(format!("redis: {e}")))
                }
            },
            Err(_) => {
                self.count_error("timeout");
                self.failed("command timed out");
                Err(StoreError::Unavailable("redis command timed out".into()))
            }
        }
    }
}

/// A command's name, upper case, as its latency's label (`GET`, `MGET`, ...).
fn command_name(cmd: &redis::Cmd) -> String {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => String::from_utf8_lossy(name).to_ascii_uppercase(),
        _ => "?".to_owned(),
    }
}
