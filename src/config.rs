//! Configuration: every setting is a flag and an environment variable (12-factor).
//!
//! `afw --help` documents each one. Defaults live in constants so that [`Config::default`]
//! (used by tests and the simulation) and the command line agree without reading the
//! environment.

use std::net::IpAddr;

use clap::Parser;

use crate::storage::StoreLimits;

pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 3001;
pub const DEFAULT_REDIS_PREFIX: &str = "afw:";
pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 800;
pub const DEFAULT_SESSION_TTL_SECS: u64 = StoreLimits::DEFAULT.session_ttl_ms / 1000;
pub const DEFAULT_QUEUE_TTL_SECS: u64 = StoreLimits::DEFAULT.queue_ttl_ms / 1000;
pub const DEFAULT_MAX_EVENTS: usize = StoreLimits::DEFAULT.max_events_per_session;
pub const DEFAULT_MAX_INPUT_QUEUE: usize = StoreLimits::DEFAULT.max_input_queue;
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
pub const DEFAULT_WS_MAX_CLIENTS: usize = 10_000;
pub const DEFAULT_WS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
pub const DEFAULT_WS_RATE_LIMIT: u32 = 50;
pub const DEFAULT_WS_SEND_QUEUE: usize = 1024;
pub const DEFAULT_WS_HEARTBEAT_SECS: u64 = 20;
pub const DEFAULT_WS_SEND_TIMEOUT_SECS: u64 = 10;
/// The real dashboard's development servers (Vite).
pub const DEFAULT_CORS_ORIGINS: &str = "http://localhost:5173,http://127.0.0.1:5173";
pub const DEFAULT_RATE_EVENTS: u32 = 500;
pub const DEFAULT_RATE_READS: u32 = 200;
pub const DEFAULT_RATE_WRITES: u32 = 100;
pub const DEFAULT_RATE_WS: u32 = 5;
pub const DEFAULT_RATE_BURST_SECS: u32 = 10;
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_MAX_CONNECTIONS: usize = 12_000;
pub const DEFAULT_MAX_SESSIONS: usize = StoreLimits::DEFAULT.max_sessions;
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024 + 64 * 1024;
pub const DEFAULT_SESSION_BUDGET_BYTES: usize = StoreLimits::DEFAULT.session_budget_bytes;
pub const DEFAULT_MEMORY_BUDGET_BYTES: usize = StoreLimits::DEFAULT.memory_budget_bytes;
pub const DEFAULT_WS_MAX_SUBSCRIPTIONS: usize = 100;
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 20;
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// A secret from the command line or the environment: never shown by `Debug`, so it cannot
/// reach a log line through a `{:?}` of the configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Where session snapshots are archived (`AFW_ARCHIVE`).
#[derive(Clone, PartialEq, Eq)]
pub enum ArchiveSetting {
    Off,
    /// `dir:<path>`: one JSON file per snapshot under `<path>/<UTC date>/`.
    Dir(std::path::PathBuf),
    /// `postgres://...` or `postgresql://...` (may hold a password: never shown).
    Postgres(Secret),
}

pub const DEFAULT_ARCHIVE: &str = "dir:./data/history";
pub const DEFAULT_ARCHIVE_RETENTION_DAYS: u32 = 7;
pub const DEFAULT_ARCHIVE_SWEEP_SECS: u64 = 60;

impl std::fmt::Debug for ArchiveSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Dir(path) => write!(f, "dir:{}", path.display()),
            Self::Postgres(_) => f.write_str("postgres://<redacted>"),
        }
    }
}

impl std::str::FromStr for ArchiveSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "off" {
            Ok(Self::Off)
        } else if let Some(path) = s.strip_prefix("dir:") {
            if path.is_empty() {
                return Err("dir: needs a path, e.g. dir:./data/history".into());
            }
            Ok(Self::Dir(path.into()))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(Self::Postgres(Secret(s.to_owned())))
        } else {
            Err("expected off, dir:<path> or postgres://user:password@host:port/db".into())
        }
    }
}

/// afw — the ActionFlows backend.
///
/// Keeps sessions, events, chains and the command and input queues of AI coding agents, and
/// streams them to dashboards over a WebSocket.
#[derive(Debug, Clone, Parser, PartialEq, Eq)]
#[command(name = "afw", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on. Use 0.0.0.0 to accept connections from other machines.
    #[arg(long, env = "HOST", default_value = DEFAULT_HOST)]
    pub host: IpAddr,

    /// TCP port to listen on.
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Redis URL, redis://[user:password@]host:port/db. When set, everything is kept in
    /// Redis and any number of instances share it; unset, memory storage.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// PEM file of extra CA certificates to trust for rediss:// (besides the public roots),
    /// e.g. a private CA that signed your Redis server's certificate.
    #[arg(long, env = "AFW_REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,

    /// Longest wait for one Redis command or connection, in milliseconds; past it the
    /// request answers 503.
    #[arg(long, env = "AFW_REDIS_TIMEOUT_MS", default_value_t = DEFAULT_REDIS_TIMEOUT_MS)]
    pub redis_timeout_ms: u64,

    /// Prefix of every Redis key and of the Pub/Sub channel.
    #[arg(long, env = "REDIS_PREFIX", default_value = DEFAULT_REDIS_PREFIX)]
    pub redis_prefix: String,

    /// Seconds a session, its events and chains live after their last activity.
    #[arg(long, env = "AFW_SESSION_TTL_SECS", default_value_t = DEFAULT_SESSION_TTL_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub session_ttl_secs: u64,

    /// Seconds the command and input queues live after the session's last activity.
    #[arg(long, env = "AFW_QUEUE_TTL_SECS", default_value_t = DEFAULT_QUEUE_TTL_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub queue_ttl_secs: u64,

    /// Events kept per session; the oldest are trimmed beyond this.
    #[arg(long, env = "AFW_MAX_EVENTS_PER_SESSION", default_value_t = DEFAULT_MAX_EVENTS)]
    pub max_events_per_session: usize,

    /// Input items that may wait per session; more are refused with 429.
    #[arg(long, env = "AFW_MAX_INPUT_QUEUE", default_value_t = DEFAULT_MAX_INPUT_QUEUE)]
    pub max_input_queue: usize,

    /// Largest accepted HTTP request body, in bytes (larger ones get 413).
    #[arg(long, env = "AFW_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Most WebSocket clients at once; more are closed with code 1008.
    #[arg(long, env = "AFW_WS_MAX_CLIENTS", default_value_t = DEFAULT_WS_MAX_CLIENTS)]
    pub ws_max_clients: usize,

    /// Largest WebSocket message a client may send, in bytes.
    #[arg(long, env = "AFW_WS_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_WS_MAX_MESSAGE_BYTES)]
    pub ws_max_message_bytes: usize,

    /// Messages per second a WebSocket client may send.
    #[arg(long, env = "AFW_WS_RATE_LIMIT", default_value_t = DEFAULT_WS_RATE_LIMIT)]
    pub ws_rate_limit: u32,

    /// Frames that may wait for a slow WebSocket client before it is disconnected (1013).
    #[arg(long, env = "AFW_WS_SEND_QUEUE", default_value_t = DEFAULT_WS_SEND_QUEUE)]
    pub ws_send_queue: usize,

    /// Seconds between heartbeats (protocol ping plus a {"type":"pong"} frame).
    #[arg(long, env = "AFW_WS_HEARTBEAT_SECS", default_value_t = DEFAULT_WS_HEARTBEAT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub ws_heartbeat_secs: u64,

    /// Seconds a single WebSocket write may take before the client is dropped.
    #[arg(long, env = "AFW_WS_SEND_TIMEOUT_SECS", default_value_t = DEFAULT_WS_SEND_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub ws_send_timeout_secs: u64,

    /// Browser origins allowed to call the API and open the WebSocket, comma-separated
    /// (exact scheme://host[:port]); afw's own origin is always allowed. "*" allows any
    /// origin (logged as a warning at start).
    #[arg(long, env = "AFW_CORS_ORIGINS", default_value = DEFAULT_CORS_ORIGINS)]
    pub cors_origins: String,

    /// Extra Host names accepted while listening on loopback (comma-separated, without
    /// port); localhost, 127.0.0.1 and [::1] always are. Any other Host is refused (DNS
    /// rebinding). Beyond loopback, when set, only these are accepted.
    #[arg(long, env = "AFW_ALLOWED_HOSTS", default_value = "")]
    pub allowed_hosts: String,

    /// API key required on every request but /health and /ready (Authorization: Bearer
    /// or x-api-key; ?apiKey= on the WebSocket upgrade). Unset: no key is required.
    #[arg(long, env = "AFW_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,

    /// More accepted API keys, comma-separated: list the old and the new key to rotate
    /// without downtime.
    #[arg(long, env = "AFW_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<Secret>,

    /// Proxies whose X-Forwarded-For names the client for rate limiting (comma-separated
    /// IP addresses or CIDR blocks). Others' X-Forwarded-For is ignored.
    #[arg(long, env = "AFW_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,

    /// Turn the per-client rate limits off (the variable takes 1/0, true/false, yes/no).
    #[arg(long, env = "AFW_RATE_LIMIT_OFF", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub rate_limit_off: bool,

    /// Events per second per client (POST /api/events, /api/events/batch counts each
    /// event once per request, terminal output).
    #[arg(long, env = "AFW_RATE_LIMIT_EVENTS", default_value_t = DEFAULT_RATE_EVENTS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_events: u32,

    /// Reads (GET) per second per client.
    #[arg(long, env = "AFW_RATE_LIMIT_READS", default_value_t = DEFAULT_RATE_READS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_reads: u32,

    /// Other writes (sessions, commands, input, acks) per second per client.
    #[arg(long, env = "AFW_RATE_LIMIT_WRITES", default_value_t = DEFAULT_RATE_WRITES,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_writes: u32,

    /// WebSocket connections opened per second per client.
    #[arg(long, env = "AFW_RATE_LIMIT_WS", default_value_t = DEFAULT_RATE_WS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_ws: u32,

    /// Bursts: a client may use this many seconds' worth of its rate at once.
    #[arg(long, env = "AFW_RATE_LIMIT_BURST_SECS", default_value_t = DEFAULT_RATE_BURST_SECS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_burst_secs: u32,

    /// Seconds a client has to send a request's headers once it started them.
    #[arg(long, env = "AFW_HEADER_TIMEOUT_SECS", default_value_t = DEFAULT_HEADER_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,

    /// Seconds a client has to send a request's whole body.
    #[arg(long, env = "AFW_BODY_TIMEOUT_SECS", default_value_t = DEFAULT_BODY_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_secs: u64,

    /// Seconds a connection may sit idle (no request in flight, nothing sent) before it is
    /// closed; also the longest wait for a new connection's first byte.
    #[arg(long, env = "AFW_IDLE_TIMEOUT_SECS", default_value_t = DEFAULT_IDLE_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,

    /// Most open connections (HTTP and WebSocket). Beyond it new connections get 503
    /// (/health and /ready still answer). Lowered at start to fit the open-file limit.
    #[arg(long, env = "AFW_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,

    /// Most sessions kept in memory storage; at the cap the least recently active one is
    /// evicted. Redis mode is bounded by Redis's maxmemory instead.
    #[arg(long, env = "AFW_MAX_SESSIONS", default_value_t = DEFAULT_MAX_SESSIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_sessions: usize,

    /// Memory storage: bytes of events kept across all sessions; beyond it the least
    /// recently active sessions are evicted. Redis mode is bounded by maxmemory instead.
    #[arg(long, env = "AFW_MEMORY_BUDGET_BYTES", default_value_t = DEFAULT_MEMORY_BUDGET_BYTES)]
    pub memory_budget_bytes: usize,

    /// Largest stored event, in bytes (larger ones are a 413).
    #[arg(long, env = "AFW_MAX_EVENT_BYTES", default_value_t = DEFAULT_MAX_EVENT_BYTES)]
    pub max_event_bytes: usize,

    /// Bytes of events a session keeps; the oldest are trimmed beyond it.
    #[arg(long, env = "AFW_SESSION_BUDGET_BYTES", default_value_t = DEFAULT_SESSION_BUDGET_BYTES)]
    pub session_budget_bytes: usize,

    /// Largest listing response (events, sessions, users, terminal buffer), in bytes: a
    /// page stops early past it and says where to continue.
    #[arg(long, env = "AFW_MAX_RESPONSE_BYTES", default_value_t = DEFAULT_MAX_RESPONSE_BYTES)]
    pub max_response_bytes: usize,

    /// Sessions one WebSocket client may subscribe to.
    #[arg(long, env = "AFW_WS_MAX_SUBSCRIPTIONS", default_value_t = DEFAULT_WS_MAX_SUBSCRIPTIONS)]
    pub ws_max_subscriptions: usize,

    /// This instance's name in /health (default: generated at start).
    #[arg(long, env = "AFW_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Log filter, e.g. "info" or "afw=debug,tower_http=info".
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,

    /// Log format: `pretty` (human-readable, one line per event) or `json` (one JSON object
    /// per line, for log collectors).
    #[arg(long, env = "AFW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Turns off request ids, the per-request log line and the HTTP request metrics (the
    /// other counters stay): for benchmarks, and for deployments that want none of them.
    #[arg(long, env = "AFW_OBSERVE_OFF", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::FalseyValueParser::new())]
    pub observe_off: bool,

    /// Key required to read `/metrics` (as `Authorization: Bearer <key>`). Unset, `/metrics`
    /// is open like `/health`.
    #[arg(long, env = "AFW_METRICS_KEY", hide_env_values = true)]
    pub metrics_key: Option<Secret>,

    /// Seconds a shutdown (SIGTERM, SIGINT) may take: requests in flight finish, long polls
    /// are answered, WebSocket clients are closed with 1001; whatever is left then is cut.
    #[arg(long, env = "AFW_SHUTDOWN_GRACE_SECS", default_value_t = DEFAULT_SHUTDOWN_GRACE_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub shutdown_grace_secs: u64,

    /// Where snapshots of ended and expiring sessions go, for the history routes:
    /// `dir:<path>` (one JSON file per session under `<path>/<UTC date>/`), a PostgreSQL URL
    /// `postgres://user:password@host:port/db` (shared by every instance), or `off`.
    #[arg(long, env = "AFW_ARCHIVE", default_value = DEFAULT_ARCHIVE, hide_env_values = true)]
    pub archive: ArchiveSetting,

    /// Days of history kept; older dates are removed (0 keeps everything).
    #[arg(long, env = "AFW_ARCHIVE_RETENTION_DAYS", default_value_t = DEFAULT_ARCHIVE_RETENTION_DAYS,
          value_parser = clap::value_parser!(u32).range(0..=36_500))]
    pub archive_retention_days: u32,

    /// Seconds between archive sweeps: sessions near their TTL, sessions a crashed instance
    /// left unarchived, and retention (one instance sweeps at a time).
    #[arg(long, env = "AFW_ARCHIVE_SWEEP_SECS", default_value_t = DEFAULT_ARCHIVE_SWEEP_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub archive_sweep_secs: u64,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: DEFAULT_PORT,
            redis_url: None,
            redis_timeout_ms: DEFAULT_REDIS_TIMEOUT_MS,
            redis_ca_file: None,
            redis_prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            session_ttl_secs: DEFAULT_SESSION_TTL_SECS,
            queue_ttl_secs: DEFAULT_QUEUE_TTL_SECS,
            max_events_per_session: DEFAULT_MAX_EVENTS,
            max_input_queue: DEFAULT_MAX_INPUT_QUEUE,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            ws_max_clients: DEFAULT_WS_MAX_CLIENTS,
            ws_max_message_bytes: DEFAULT_WS_MAX_MESSAGE_BYTES,
            ws_rate_limit: DEFAULT_WS_RATE_LIMIT,
            ws_send_queue: DEFAULT_WS_SEND_QUEUE,
            ws_heartbeat_secs: DEFAULT_WS_HEARTBEAT_SECS,
            ws_send_timeout_secs: DEFAULT_WS_SEND_TIMEOUT_SECS,
            cors_origins: DEFAULT_CORS_ORIGINS.to_owned(),
            allowed_hosts: String::new(),
            api_key: None,
            api_keys: None,
            trusted_proxies: String::new(),
            rate_limit_off: false,
            rate_limit_events: DEFAULT_RATE_EVENTS,
            rate_limit_reads: DEFAULT_RATE_READS,
            rate_limit_writes: DEFAULT_RATE_WRITES,
            rate_limit_ws: DEFAULT_RATE_WS,
            rate_limit_burst_secs: DEFAULT_RATE_BURST_SECS,
            header_timeout_secs: DEFAULT_HEADER_TIMEOUT_SECS,
            body_timeout_secs: DEFAULT_BODY_TIMEOUT_SECS,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_sessions: DEFAULT_MAX_SESSIONS,
            memory_budget_bytes: DEFAULT_MEMORY_BUDGET_BYTES,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            session_budget_bytes: DEFAULT_SESSION_BUDGET_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            ws_max_subscriptions: DEFAULT_WS_MAX_SUBSCRIPTIONS,
            instance_id: None,
            log: "info".to_owned(),
            log_format: LogFormat::Pretty,
            metrics_key: None,
            observe_off: false,
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
            // The command line's default is `dir:./data/history`; a configuration built in
            // code (tests, the simulation, embedding) archives nothing unless it says so.
            archive: ArchiveSetting::Off,
            archive_retention_days: DEFAULT_ARCHIVE_RETENTION_DAYS,
            archive_sweep_secs: DEFAULT_ARCHIVE_SWEEP_SECS,
        }
    }
}

impl Config {
    pub fn store_limits(&self) -> StoreLimits {
        StoreLimits {
            session_ttl_ms: self.session_ttl_secs * 1000,
            queue_ttl_ms: self.queue_ttl_secs * 1000,
            max_events_per_session: self.max_events_per_session.max(1),
            max_input_queue: self.max_input_queue,
            session_budget_bytes: self.session_budget_bytes.max(1),
            max_sessions: self.max_sessions.max(1),
            memory_budget_bytes: self.memory_budget_bytes.max(1),
            ..StoreLimits::DEFAULT
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Config::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_command_line_defaults() {
        let parsed = Config::try_parse_from([
            "afw",
            "--host",
            DEFAULT_HOST,
            "--port",
            "3001",
            "--log",
            "info",
        ])
        .unwrap();
        // Variables set in the environment of the test run may legitimately differ.
        let expected = Config {
            redis_url: parsed.redis_url.clone(),
            redis_ca_file: parsed.redis_ca_file.clone(),
            instance_id: parsed.instance_id.clone(),
            api_key: parsed.api_key.clone(),
            api_keys: parsed.api_keys.clone(),
            log_format: parsed.log_format,
            metrics_key: parsed.metrics_key.clone(),
            archive: ArchiveSetting::Dir("./data/history".into()),
            ..Config::default()
        };
        if std::env::vars().all(|(k, _)| !k.starts_with("AFW_") && k != "REDIS_PREFIX") {
            assert_eq!(parsed, expected);
        }
    }
}
