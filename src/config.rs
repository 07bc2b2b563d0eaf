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
pub const DEFAULT_SESSION_TTL_SECS: u64 = 24 * 3600;
pub const DEFAULT_QUEUE_TTL_SECS: u64 = 5 * 60;
pub const DEFAULT_MAX_EVENTS: usize = 10_000;
pub const DEFAULT_MAX_INPUT_QUEUE: usize = 100;
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
pub const DEFAULT_WS_MAX_CLIENTS: usize = 10_000;
pub const DEFAULT_WS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
pub const DEFAULT_WS_RATE_LIMIT: u32 = 50;
pub const DEFAULT_WS_SEND_QUEUE: usize = 1024;
pub const DEFAULT_WS_HEARTBEAT_SECS: u64 = 20;
pub const DEFAULT_WS_SEND_TIMEOUT_SECS: u64 = 10;

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
    #[arg(long, env = "REDIS_URL")]
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

    /// This instance's name in /health (default: generated at start).
    #[arg(long, env = "AFW_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Log filter, e.g. "info" or "afw=debug,tower_http=info".
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "AFW_LOG_JSON")]
    pub log_json: bool,
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
            instance_id: None,
            log: "info".to_owned(),
            log_json: false,
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
            ..StoreLimits::default()
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
            log_json: parsed.log_json,
            ..Config::default()
        };
        if std::env::vars().all(|(k, _)| !k.starts_with("AFW_") && k != "REDIS_PREFIX") {
            assert_eq!(parsed, expected);
        }
    }
}
