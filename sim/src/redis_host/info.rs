//! `INFO`: the fields afw reads (`used_memory`, `connected_clients`, `pubsub_channels`,
//! `pubsub_patterns`, `expired_keys`, `evicted_keys`, `keyspace_hits`, `keyspace_misses`),
//! in Redis's layout (`# Section` headers, `name:value` lines, CRLF). Memory is the
//! estimate of [`super::memory`]; nothing evicts and hits and misses are not counted (0).
//! The other sections and fields of a real `INFO` are left out; nothing here may change data.

use super::{Db, Reply};

/// The counters `INFO` reports that the keyspace does not hold itself.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Stats {
    /// Open client connections.
    pub clients: u64,
    /// Keys removed because their TTL passed.
    pub expired_keys: u64,
}

pub(super) fn exec(db: &Db) -> Reply {
    let channels = db.channels.values().filter(|s| !s.is_empty()).count();
    let text = format!(
        "# Clients\r\nconnected_clients:{}\r\n\r\n\
         # Memory\r\nused_memory:{}\r\n\r\n\
         # Stats\r\nexpired_keys:{}\r\nevicted_keys:0\r\nkeyspace_hits:0\r\n\
         keyspace_misses:0\r\npubsub_channels:{channels}\r\npubsub_patterns:0\r\n",
        db.stats.clients,
        db.used_memory(),
        db.stats.expired_keys,
    );
    Reply::Bulk(text.into_bytes())
}
