//! Redis's own figures (memory, clients, Pub/Sub channels, expired and evicted keys,
//! keyspace hits and misses), read with `INFO` on a timer and kept for the metrics.
//!
//! One `INFO` every [`PERIOD`] per instance, whatever the scrape rate; a failed read keeps
//! the last figures (the Redis error counters tell the outage). Nothing here may write.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::RedisLink;
use crate::metrics::{RedisFigures, RedisInfo};

/// How often `INFO` is read.
pub(crate) const PERIOD: Duration = Duration::from_secs(15);

/// Reads `INFO` now and every [`PERIOD`] until `shutdown` flips.
pub(crate) async fn run(
    link: Arc<RedisLink>,
    figures: Arc<RedisFigures>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        match link.query::<String>(&redis::cmd("INFO")).await {
            Ok(text) => match RedisInfo::parse(&text) {
                Some(info) => figures.set(info),
                None => tracing::debug!("INFO answered without used_memory"),
            },
            Err(e) => tracing::debug!(error = %e, "cannot read INFO"),
        }
    }
}
