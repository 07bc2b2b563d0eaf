//! Local fan-out: delivering stored events and notices to this instance's WebSocket clients,
//! and waking this instance's input long polls.
//!
//! A storage backend publishes here in `seq` order (the memory store inside the same critical
//! section that stores the event). Each event is serialised into its WS frame once and the
//! same bytes go to every subscriber. Delivery never blocks: every client has a bounded inbox,
//! and a client whose inbox is full is kicked (its connection closes with 1013) instead of
//! letting memory grow. De-duplication and gap repair by `seq` happen per client in
//! [`crate::ws`], so a publisher may deliver an event more than once.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use tokio::sync::{Notify, mpsc};

use crate::model::{SessionId, StoredEvent, Timestamp};

/// What a client's connection task receives.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A stored event; the client drops it if it already has `seq`.
    Event {
        session_id: SessionId,
        seq: u64,
        frame: Utf8Bytes,
    },
    /// Events of this session may have been missed (the Pub/Sub link was down): compare
    /// with storage and fill the gap.
    Resync { session_id: SessionId },
    /// A notification without a sequence number (`session:updated`, `command:queued`, ...).
    Notice {
        session_id: SessionId,
        frame: Utf8Bytes,
        /// The session's history was removed (`session:deleted`): a recreated session
        /// starts again at `seq` 1, so the client's cursor must start over too.
        resets: bool,
    },
}

/// The notice after which a session's sequence starts over.
pub const SESSION_DELETED: &str = "session:deleted";

/// The receiving side of one WebSocket client, as the bus sees it.
#[derive(Debug)]
pub struct Inbox {
    pub id: u64,
    tx: mpsc::Sender<Outbound>,
    kicked: AtomicBool,
    /// Notified once when the client fell too far behind and must be disconnected.
    pub kick: Notify,
}

impl Inbox {
    pub fn new(id: u64, capacity: usize) -> (Arc<Self>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let inbox = Arc::new(Self {
            id,
            tx,
            kicked: AtomicBool::new(false),
            kick: Notify::new(),
        });
        (inbox, rx)
    }

    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::Relaxed)
    }

    fn deliver(&self, item: Outbound) {
        match self.tx.try_send(item) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.kicked.swap(true, Ordering::Relaxed) {
                    self.kick.notify_one();
                }
            }
        }
    }
}

const INPUT_SHARDS: usize = 64;

#[derive(Debug)]
pub struct Bus {
    subscribers: RwLock<BTreeMap<SessionId, Vec<Arc<Inbox>>>>,
    /// Subscriptions across all sessions: lets publishing skip the lock when nobody listens.
    subscriptions: AtomicUsize,
    /// Long polls wait on the shard of their session; a wake-up for another session in the
    /// same shard is harmless (the poll re-checks its queue).
    input_wakers: Vec<Notify>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    pub fn new() -> Self {
        Self {
            subscribers: RwLock::new(BTreeMap::new()),
            subscriptions: AtomicUsize::new(0),
            input_wakers: (0..INPUT_SHARDS).map(|_| Notify::new()).collect(),
        }
    }

    pub fn subscribe(&self, session_id: &SessionId, inbox: &Arc<Inbox>) {
        let mut subs = self.subscribers.write().unwrap_or_else(|e| e.into_inner());
        let list = subs.entry(session_id.clone()).or_default();
        if !list.iter().any(|i| i.id == inbox.id) {
            list.push(Arc::clone(inbox));
            self.subscriptions.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn unsubscribe(&self, session_id: &SessionId, inbox_id: u64) {
        let mut subs = self.subscribers.write().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = subs.get_mut(session_id) {
            let before = list.len();
            list.retain(|i| i.id != inbox_id);
            self.subscriptions
                .fetch_sub(before - list.len(), Ordering::Relaxed);
            if list.is_empty() {
                subs.remove(session_id);
            }
        }
    }

    /// Number of (client, session) subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed)
    }

    pub fn has_subscribers(&self, session_id: &SessionId) -> bool {
        let subs = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
        subs.contains_key(session_id)
    }

    /// Delivers a stored event to every local subscriber of its session.
    pub fn publish_event(&self, session_id: &SessionId, event: &StoredEvent) {
        if self.subscriptions.load(Ordering::Relaxed) == 0 {
            return;
        }
        let subs = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
        let Some(list) = subs.get(session_id) else {
            return;
        };
        let frame = event_frame(session_id, event);
        for inbox in list {
            inbox.deliver(Outbound::Event {
                session_id: session_id.clone(),
                seq: event.seq,
                frame: frame.clone(),
            });
        }
    }

    /// Delivers a notification (`session:updated`, `command:queued`, `input:queued`,
    /// `awaiting`) to the session's local subscribers.
    pub fn publish_notice<P: Serialize>(
        &self,
        session_id: &SessionId,
        kind: &str,
        payload: &P,
        now: Timestamp,
    ) {
        if self.subscriptions.load(Ordering::Relaxed) == 0 {
            return;
        }
        let subs = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
        let Some(list) = subs.get(session_id) else {
            return;
        };
        let frame = notice_frame(session_id, kind, payload, now);
        for inbox in list {
            inbox.deliver(Outbound::Notice {
                session_id: session_id.clone(),
                frame: frame.clone(),
                resets: kind == SESSION_DELETED,
            });
        }
    }

    /// Asks every local subscriber and input long poll to re-check its sessions against
    /// storage, after a Pub/Sub outage in which messages may have been lost.
    pub fn resync_all(&self) {
        for waker in &self.input_wakers {
            waker.notify_waiters();
        }
        let subs = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
        for (session_id, list) in subs.iter() {
            for inbox in list {
                inbox.deliver(Outbound::Resync {
                    session_id: session_id.clone(),
                });
            }
        }
    }

    /// Delivers an already-built notice frame (one that came from another instance).
    pub fn publish_notice_frame(&self, session_id: &SessionId, frame: Utf8Bytes, resets: bool) {
        if self.subscriptions.load(Ordering::Relaxed) == 0 {
            return;
        }
        let subs = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = subs.get(session_id) {
            for inbox in list {
                inbox.deliver(Outbound::Notice {
                    session_id: session_id.clone(),
                    frame: frame.clone(),
                    resets,
                });
            }
        }
    }

    /// Wakes the long polls waiting for input on this session.
    pub fn input_queued(&self, session_id: &SessionId) {
        self.input_waker(session_id).notify_waiters();
    }

    /// What an input long poll waits on. Create the `notified()` future (and `enable` it)
    /// before checking the queue, so an arrival in between is not missed.
    pub fn input_waker(&self, session_id: &SessionId) -> &Notify {
        // DefaultHasher::new() has fixed keys: the same shard in every process and run.
        let mut h = DefaultHasher::new();
        session_id.hash(&mut h);
        &self.input_wakers[(h.finish() % INPUT_SHARDS as u64) as usize]
    }
}

/// `{"type":"event","sessionId":..,"seq":N,"timestamp":..,"payload":<event>}`, built once.
pub fn event_frame(session_id: &SessionId, event: &StoredEvent) -> Utf8Bytes {
    let payload = std::str::from_utf8(&event.json).unwrap_or("null");
    let frame = format!(
        r#"{{"type":"event","sessionId":{},"seq":{},"timestamp":"{}","payload":{}}}"#,
        json_string(session_id.as_str()),
        event.seq,
        event.timestamp.to_rfc3339(),
        payload
    );
    Utf8Bytes::from(frame)
}

pub fn notice_frame<P: Serialize>(
    session_id: &SessionId,
    kind: &str,
    payload: &P,
    now: Timestamp,
) -> Utf8Bytes {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Envelope<'a, P> {
        #[serde(rename = "type")]
        kind: &'a str,
        session_id: &'a SessionId,
        timestamp: Timestamp,
        payload: &'a P,
    }
    let env = Envelope {
        kind,
        session_id,
        timestamp: now,
        payload,
    };
    Utf8Bytes::from(serde_json::to_string(&env).unwrap_or_default())
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventType;
    use bytes::Bytes;

    fn event(seq: u64) -> StoredEvent {
        StoredEvent {
            seq,
            kind: EventType::FileCreated,
            timestamp: Timestamp(0),
            json: Bytes::from_static(br#"{"type":"file:created"}"#),
        }
    }

    #[test]
    fn event_frame_is_valid_json_with_the_spec_envelope() {
        let sid = SessionId::parse("s1").unwrap();
        let frame = event_frame(&sid, &event(4));
        let v: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
        assert_eq!(v["type"], "event");
        assert_eq!(v["sessionId"], "s1");
        assert_eq!(v["seq"], 4);
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["payload"]["type"], "file:created");
    }

    #[tokio::test]
    async fn a_full_inbox_kicks_the_client_instead_of_growing() {
        let bus = Bus::new();
        let sid = SessionId::parse("s1").unwrap();
        let (inbox, mut rx) = Inbox::new(1, 2);
        bus.subscribe(&sid, &inbox);
        for seq in 1..=3 {
            bus.publish_event(&sid, &event(seq));
        }
        assert!(inbox.is_kicked());
        assert!(matches!(
            rx.recv().await,
            Some(Outbound::Event { seq: 1, .. })
        ));
        assert!(matches!(
            rx.recv().await,
            Some(Outbound::Event { seq: 2, .. })
        ));
        assert!(rx.try_recv().is_err(), "the third event was not queued");
        bus.unsubscribe(&sid, 1);
        assert_eq!(bus.subscription_count(), 0);
    }
}
