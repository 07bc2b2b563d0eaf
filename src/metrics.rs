//! What one instance counts, and its Prometheus text.
//!
//! [`Metrics`] owns one `prometheus-client` registry per instance (several simulated
//! instances in one process never share a counter). The parts of afw that count something
//! hold a clone of the handle they need (a counter or a family is a shared `Arc` inside):
//! the HTTP observer, the WebSocket connections, the bus, the Redis link and the Pub/Sub
//! bridge. Gauges of live state (clients, subscriptions) are set by the scrape from the
//! owners' own atomics; Redis's own figures are read by a timer ([`RedisFigures`]), never by
//! a scrape. This module must not know HTTP, storage or the bus: it names what is counted,
//! nothing more.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `Content-Type` of [`Metrics::render`]: the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    /// The route template (`/api/sessions/{id}`), or `unmatched`.
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: &'static str,
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    pub class: &'static str,
}

type Counters<L> = Family<L, Counter>;
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_buckets() -> Histogram {
    // 0.5 ms to ~75 s (long polls wait up to 60 s).
    Histogram::new(exponential_buckets(0.0005, 2.5, 14))
}

fn redis_buckets() -> Histogram {
    // 0.1 ms to ~1.6 s (the operation timeout is 800 ms by default).
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

fn length_buckets() -> Histogram {
    Histogram::new([
        0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
    ])
}

/// The HTTP requests' families.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    pub requests: Counters<RequestLabels>,
    pub latency: Histograms<RouteLabels>,
    /// Requests the edge or the server refused, by reason (`rate_limited`, `unauthorized`,
    /// `forbidden`, `too_large`, `timeout`, `overloaded`, `unavailable`, `queue_full`).
    pub refused: Counters<ReasonLabels>,
    /// Requests the rate limiter refused, by route class.
    pub rate_limited: Counters<ClassLabels>,
}

/// The WebSocket's families.
#[derive(Clone, Debug)]
pub struct WsMetrics {
    pub clients: Gauge,
    pub subscriptions: Gauge,
    /// Frames received from clients (`in`) and written to them (`out`).
    pub frames: Counters<DirectionLabels>,
    /// Connections closed by the server or lost, by reason.
    pub disconnects: Counters<ReasonLabels>,
    /// Holes in a subscriber's sequence filled from storage.
    pub gaps_repaired: Counter,
    /// Subscriptions re-read from storage after a Pub/Sub outage.
    pub resyncs: Counter,
}

/// Events, notices and queues.
#[derive(Clone, Debug)]
pub struct DataMetrics {
    pub events_stored: Counter,
    pub events_duplicate: Counter,
    /// Event frames handed to local subscribers (one per subscriber).
    pub events_broadcast: Counter,
    /// Queue length after each push (`input`), and commands pending at each claim
    /// (`commands`).
    pub queue_length: Histograms<QueueLabels>,
}

/// Redis: commands, errors and the Pub/Sub link.
#[derive(Clone, Debug)]
pub struct RedisMetrics {
    pub command_latency: Histograms<CommandLabels>,
    /// Failed commands by kind: `connection`, `timeout`, `refused` (LOADING, OOM, ...),
    /// `reply` (an answer afw cannot use).
    pub errors: Counters<KindLabels>,
    /// Messages received on the channel (`in`) and published by afw's scripts (`out`).
    pub pubsub_messages: Counters<DirectionLabels>,
    /// Subscriptions made again after the Pub/Sub connection was lost.
    pub resubscribes: Counter,
    /// Redis's own figures, as the last `INFO` read them.
    pub figures: Arc<RedisFigures>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Archival: snapshots written, failures and requests dropped.
#[derive(Clone, Debug)]
pub struct ArchiveMetrics {
    /// Snapshots put, by outcome (`created`, `updated`, `stale`).
    pub snapshots: Counters<OutcomeLabels>,
    /// Bytes of the snapshots put.
    pub bytes: Counter,
    /// Attempts that failed (store or archive down): retried with backoff.
    pub failures: Counter,
    /// Archive requests dropped because the pending set was full.
    pub dropped: Counter,
    /// Sessions waiting to be archived.
    pub pending: Gauge,
    /// Archivals left to the instance holding the session's lease.
    pub elsewhere: Counter,
}

impl ArchiveMetrics {
    pub fn count(&self, outcome: &'static str, bytes: usize) {
        self.snapshots
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.bytes.inc_by(bytes as u64);
    }
}

/// Every family of one instance, and the registry they are registered in.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    pub ws: WsMetrics,
    pub data: DataMetrics,
    pub redis: RedisMetrics,
    pub archive: ArchiveMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("afw");
        let http = HttpMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_buckets as fn() -> Histogram),
            refused: Family::default(),
            rate_limited: Family::default(),
        };
        let ws = WsMetrics {
            clients: Gauge::default(),
            subscriptions: Gauge::default(),
            frames: Family::default(),
            disconnects: Family::default(),
            gaps_repaired: Counter::default(),
            resyncs: Counter::default(),
        };
        let data = DataMetrics {
            events_stored: Counter::default(),
            events_duplicate: Counter::default(),
            events_broadcast: Counter::default(),
            queue_length: Family::new_with_constructor(length_buckets as fn() -> Histogram),
        };
        let redis = RedisMetrics {
            command_latency: Family::new_with_constructor(redis_buckets as fn() -> Histogram),
            errors: Family::default(),
            pubsub_messages: Family::default(),
            resubscribes: Counter::default(),
            figures: Arc::new(RedisFigures::default()),
        };
        register(&mut registry, &http, &ws, &data, &redis);
        let archive = ArchiveMetrics {
            snapshots: Family::default(),
            bytes: Counter::default(),
            failures: Counter::default(),
            dropped: Counter::default(),
            pending: Gauge::default(),
            elsewhere: Counter::default(),
        };
        register_archive(&mut registry, &archive);
        Self {
            registry,
            http,
            ws,
            data,
            redis,
            archive,
        }
    }

    /// The registry as Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

fn register(
    r: &mut Registry,
    http: &HttpMetrics,
    ws: &WsMetrics,
    data: &DataMetrics,
    redis: &RedisMetrics,
) {
    let help = "HTTP requests answered, by method, route template and status";
    r.register("http_requests", help, http.requests.clone());
    let help = "Time to answer an HTTP request (to the response head), in seconds";
    r.register("http_request_duration_seconds", help, http.latency.clone());
    let help = "Requests refused by the edge or the server, by reason";
    r.register("http_refused", help, http.refused.clone());
    let help = "Requests refused by the rate limiter, by route class";
    r.register("http_rate_limited", help, http.rate_limited.clone());
    r.register(
        "ws_clients",
        "WebSocket clients connected",
        ws.clients.clone(),
    );
    let help = "WebSocket session subscriptions";
    r.register("ws_subscriptions", help, ws.subscriptions.clone());
    let help = "WebSocket frames received (in) and sent (out)";
    r.register("ws_frames", help, ws.frames.clone());
    let help = "WebSocket connections ended, by reason";
    r.register("ws_disconnects", help, ws.disconnects.clone());
    let help = "Gaps in a subscriber's event sequence filled from storage";
    r.register("ws_gaps_repaired", help, ws.gaps_repaired.clone());
    let help = "Subscriptions re-read from storage after a Pub/Sub outage";
    r.register("ws_resyncs", help, ws.resyncs.clone());
    let help = "Events stored (new, not duplicates)";
    r.register("events_stored", help, data.events_stored.clone());
    let help = "Events refused as duplicates of a stored eventId";
    r.register("events_duplicate", help, data.events_duplicate.clone());
    let help = "Event frames handed to local WebSocket subscribers";
    r.register("events_broadcast", help, data.events_broadcast.clone());
    let help = "Input queue length after each push; commands pending at each claim";
    r.register("queue_length", help, data.queue_length.clone());
    let help = "Redis command and script latency, in seconds";
    r.register(
        "redis_command_duration_seconds",
        help,
        redis.command_latency.clone(),
    );
    r.register(
        "redis_errors",
        "Failed Redis calls, by kind",
        redis.errors.clone(),
    );
    let help = "Pub/Sub messages received (in) and published by afw's scripts (out)";
    r.register("pubsub_messages", help, redis.pubsub_messages.clone());
    let help = "Pub/Sub subscriptions made again after the link was lost";
    r.register("pubsub_resubscribes", help, redis.resubscribes.clone());
    r.register_collector(Box::new(Arc::clone(&redis.figures)));
}

fn register_archive(r: &mut Registry, a: &ArchiveMetrics) {
    let help = "Session snapshots put in the archive, by outcome (created, updated, stale)";
    r.register("archive_snapshots", help, a.snapshots.clone());
    let help = "Bytes of the session snapshots put in the archive";
    r.register("archive_snapshot_bytes", help, a.bytes.clone());
    let help = "Archiving attempts that failed (store or archive down), retried";
    r.register("archive_failures", help, a.failures.clone());
    let help = "Archive requests dropped because the pending set was full";
    r.register("archive_dropped", help, a.dropped.clone());
    let help = "Sessions waiting to be archived";
    r.register("archive_pending", help, a.pending.clone());
    let help = "Archivals left to the instance that holds the session's lease";
    r.register("archive_leased_elsewhere", help, a.elsewhere.clone());
}

/// Redis's own figures from `INFO`, the fields afw reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisInfo {
    pub used_memory: u64,
    pub connected_clients: u64,
    pub pubsub_channels: u64,
    pub pubsub_patterns: u64,
    pub expired_keys: u64,
    pub evicted_keys: u64,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
}

impl RedisInfo {
    /// Reads the fields from an `INFO` reply (`name:value` lines); `None` without
    /// `used_memory` (not an `INFO` reply).
    pub fn parse(text: &str) -> Option<Self> {
        let mut info = Self::default();
        let mut seen = false;
        for line in text.lines() {
            let Some((name, value)) = line.trim_end().split_once(':') else {
                continue;
            };
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            let slot = match name {
                "used_memory" => {
                    seen = true;
                    &mut info.used_memory
                }
                "connected_clients" => &mut info.connected_clients,
                "pubsub_channels" => &mut info.pubsub_channels,
                "pubsub_patterns" => &mut info.pubsub_patterns,
                "expired_keys" => &mut info.expired_keys,
                "evicted_keys" => &mut info.evicted_keys,
                "keyspace_hits" => &mut info.keyspace_hits,
                "keyspace_misses" => &mut info.keyspace_misses,
                _ => continue,
            };
            *slot = value;
        }
        seen.then_some(info)
    }
}

/// The last `INFO` read, as its own families (counters as counters: Redis keeps them).
#[derive(Debug, Default)]
pub struct RedisFigures {
    last: Mutex<Option<RedisInfo>>,
}

impl RedisFigures {
    pub fn set(&self, info: RedisInfo) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(info);
    }

    pub fn get(&self) -> Option<RedisInfo> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Collector for RedisFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(info) = self.get() else {
            return Ok(());
        };
        let gauges = [
            (
                "redis_used_memory_bytes",
                "Redis used_memory",
                info.used_memory,
            ),
            (
                "redis_connected_clients",
                "Redis connected_clients",
                info.connected_clients,
            ),
            (
                "redis_pubsub_channels",
                "Redis pubsub_channels",
                info.pubsub_channels,
            ),
            (
                "redis_pubsub_patterns",
                "Redis pubsub_patterns",
                info.pubsub_patterns,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let counters = [
            (
                "redis_expired_keys",
                "Redis expired_keys",
                info.expired_keys,
            ),
            (
                "redis_evicted_keys",
                "Redis evicted_keys",
                info.evicted_keys,
            ),
            (
                "redis_keyspace_hits",
                "Redis keyspace_hits",
                info.keyspace_hits,
            ),
            (
                "redis_keyspace_misses",
                "Redis keyspace_misses",
                info.keyspace_misses,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// The method as a label: the standard ones by name, anything else `OTHER`.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_instances_count_apart() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.data.events_stored.inc();
        assert!(a.render().contains("afw_events_stored_total 1"));
        assert!(b.render().contains("afw_events_stored_total 0"));
    }

    #[test]
    fn an_info_reply_is_read_and_rendered_with_its_types() {
        let text = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n\
                    connected_clients:3\r\npubsub_channels:1\r\npubsub_patterns:0\r\n\
                    expired_keys:7\r\nevicted_keys:0\r\nkeyspace_hits:10\r\nkeyspace_misses:2\r\n";
        let info = RedisInfo::parse(text).unwrap();
        assert_eq!(info.used_memory, 1_048_576);
        assert_eq!(info.expired_keys, 7);
        assert_eq!(info.keyspace_misses, 2);
        assert_eq!(RedisInfo::parse("ERR nope"), None);
        let m = Metrics::new();
        assert!(!m.render().contains("afw_redis_used_memory_bytes"));
        m.redis.figures.set(info);
        let text = m.render();
        assert!(text.contains("# TYPE afw_redis_used_memory_bytes gauge"));
        assert!(text.contains("afw_redis_used_memory_bytes 1048576"));
        assert!(text.contains("# TYPE afw_redis_expired_keys_total counter"));
        assert!(text.contains("afw_redis_expired_keys_total 7"));
    }
}
