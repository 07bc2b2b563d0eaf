//! The Redis Pub/Sub bridge: how events and notices stored by any instance reach this
//! instance's WebSocket clients and wake its input long polls.
//!
//! One dedicated subscriber connection per instance on `{prefix}events`, dialled through
//! the injected connector. A PING every second detects a silent partition (a subscriber
//! would otherwise wait forever). After every (re)subscribe, local clients re-check their
//! sessions against storage ([`Bus::resync_all`]), because Pub/Sub drops what is published
//! while nobody listens; clients de-duplicate and fill gaps by `seq`, so every subscriber
//! sees every event exactly once, in order. The instance that stored an event receives it
//! here like any other instance: there is one delivery path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::channel::{self, Received};
use crate::bus::Bus;
use crate::domain::model::Notice;
use crate::metrics::DirectionLabels;
use crate::storage::redis::RedisLink;

const HEARTBEAT: Duration = Duration::from_secs(1);

/// Whether the bridge is subscribed right now (for `/health`).
#[derive(Debug, Default)]
pub(crate) struct BridgeStatus {
    subscribed: AtomicBool,
}

impl BridgeStatus {
    pub(crate) fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    fn set(&self, on: bool) {
        self.subscribed.store(on, Ordering::Relaxed);
    }
}

/// Hands one Pub/Sub message to the local bus. Malformed messages are logged and dropped.
pub(crate) fn dispatch(bus: &Bus, payload: &[u8]) {
    match channel::decode(payload) {
        Err(e) => tracing::warn!(error = %e, "ignoring a malformed Pub/Sub message"),
        Ok(None) => {}
        Ok(Some(Received::Event {
            session_id,
            event,
            epoch,
            data,
        })) => bus.publish_event(&session_id, &event, &epoch, || data),
        Ok(Some(Received::Notice {
            session_id,
            kind,
            fields,
            timestamp,
        })) => {
            bus.publish_notice(&session_id, kind, &fields, timestamp);
            if kind == Notice::InputQueued {
                bus.input_queued(&session_id);
            }
        }
    }
}

/// Runs the bridge until `shutdown` flips: subscribe, forward, and on any failure
/// reconnect with jittered backoff.
pub(crate) async fn run(
    link: Arc<RedisLink>,
    channel: String,
    bus: Arc<Bus>,
    status: Arc<BridgeStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    let mut ever_subscribed = false;
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        match subscribed(
            &link,
            &channel,
            &bus,
            &status,
            &mut shutdown,
            ever_subscribed,
        )
        .await
        {
            Ok(()) => return,
            Err((why, was_subscribed)) => {
                status.set(false);
                if was_subscribed {
                    failures = 0;
                    ever_subscribed = true;
                }
                if failures == 0 {
                    tracing::warn!(error = %why, channel, "Pub/Sub link lost; reconnecting");
                }
                failures = failures.saturating_add(1);
            }
        }
        let delay = link.backoff(failures - 1);
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// One subscriber connection's life. `Ok` on shutdown; `Err((why, had subscribed))`.
async fn subscribed(
    link: &RedisLink,
    channel: &str,
    bus: &Bus,
    status: &BridgeStatus,
    shutdown: &mut watch::Receiver<bool>,
    again: bool,
) -> Result<(), (String, bool)> {
    let timeout = link.timeouts().op;
    let target = link.target();
    let fail = |e: String| (e, false);
    let io = tokio::time::timeout(timeout, link.connector().connect(&target.host, target.port))
        .await
        .map_err(|_| fail("connect timed out".into()))?
        .map_err(|e| fail(format!("connect: {e}")))?;
    let mut pubsub = tokio::time::timeout(timeout, redis::aio::PubSub::new(&target.info, io))
        .await
        .map_err(|_| fail("handshake timed out".into()))?
        .map_err(|e| fail(format!("handshake: {e}")))?;
    tokio::time::timeout(timeout, pubsub.subscribe(channel))
        .await
        .map_err(|_| fail("subscribe timed out".into()))?
        .map_err(|e| fail(format!("subscribe: {e}")))?;
    let (mut sink, mut stream) = pubsub.split();
    status.set(true);
    let metrics = link.metrics();
    if again {
        metrics.resubscribes.inc();
    }
    let received = metrics
        .pubsub_messages
        .get_or_create(&DirectionLabels { direction: "in" })
        .clone();
    tracing::info!(channel, redis = %target.describe(), "Pub/Sub subscribed");
    // Clients resync by reading storage: wait (bounded) until the store's own connection,
    // which may still be in its reconnect backoff, answers too.
    for _ in 0..50 {
        if link.query::<String>(&redis::cmd("PING")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bus.resync_all();
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return Ok(()),
            msg = stream.next() => match msg {
                Some(msg) => {
                    received.inc();
                    dispatch(bus, msg.get_payload_bytes());
                }
                None => return Err(("subscription closed".into(), true)),
            },
            _ = heartbeat.tick() => {
                match tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err((format!("ping: {e}"), true)),
                    Err(_) => return Err(("ping timed out".into(), true)),
                }
            }
        }
    }
}
