//! Local fan-out: delivering stored events and notices to this instance's WebSocket clients,
//! and waking this instance's input long polls.
//!
//! A storage backend publishes here in `seq` order (the memory store inside the same critical
//! section that stores the event). Each event is serialised into its WS frame once and the
//! same bytes go to every subscriber. Delivery never blocks: every client has a bounded inbox,
//! and a client whose inbox is full is kicked (its connection closes with 1013) instead of
//! letting memory grow. De-duplication and gap repair by `seq` happen per client in
//! [`crate::http::ws`], so a publisher may deliver an event more than once.

use crate::sync::{read, write};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::ws::Utf8Bytes;
use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc};

use crate::domain::model::{Notice, SessionId, StoredEvent, Timestamp};

/// What a client's connection task receives.
#[derive(Debug, Clone)]
pub(crate) enum Outbound {
    /// A stored event; the client drops it if it already has `seq`.
    Event {
        session_id: SessionId,
        seq: u64,
        /// The session's incarnation ('' when unknown): a `seq` counts within one epoch.
        /// Shared by every subscriber's copy, like the frame.
        epoch: Arc<str>,
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

/// The receiving side of one WebSocket client, as the bus sees it.
#[derive(Debug)]
pub(crate) struct Inbox {
    pub id: u64,
    tx: mpsc::Sender<Outbound>,
    kicked: AtomicBool,
    /// Notified once when the client fell too far behind and must be disconnected.
    pub kick: Notify,
}

impl Inbox {
    pub(crate) fn new(id: u64, capacity: usize) -> (Arc<Self>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let inbox = Arc::new(Self {
            id,
            tx,
            kicked: AtomicBool::new(false),
            kick: Notify::new(),
        });
        (inbox, rx)
    }

    #[cfg(test)]
    fn is_kicked(&self) -> bool {
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
    /// Event frames handed to subscribers (one per subscriber).
    broadcast: prometheus_client::metrics::counter::Counter,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    pub fn new() -> Self {
        Self::counting(prometheus_client::metrics::counter::Counter::default())
    }

    /// A bus that counts the event frames it hands out in `broadcast`.
    pub fn counting(broadcast: prometheus_client::metrics::counter::Counter) -> Self {
        Self {
            subscribers: RwLock::new(BTreeMap::new()),
            subscriptions: AtomicUsize::new(0),
            input_wakers: (0..INPUT_SHARDS).map(|_| Notify::new()).collect(),
            broadcast,
        }
    }

    pub(crate) fn subscribe(&self, session_id: &SessionId, inbox: &Arc<Inbox>) {
        let mut subs = write(&self.subscribers);
        let list = subs.entry(session_id.clone()).or_default();
        if !list.iter().any(|i| i.id == inbox.id) {
            list.push(Arc::clone(inbox));
            self.subscriptions.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn unsubscribe(&self, session_id: &SessionId, inbox_id: u64) {
        let mut subs = write(&self.subscribers);
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
    pub(crate) fn subscription_count(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed)
    }

    /// Delivers a stored event to every local subscriber of its session.
    ///
    /// `session` gives the session as stored after the event, as JSON; it is only asked
    /// for (`session:*` events with local subscribers) when a frame carries it.
    pub(crate) fn publish_event(
        &self,
        session_id: &SessionId,
        event: &StoredEvent,
        epoch: &str,
        session: impl FnOnce() -> Option<String>,
    ) {
        if self.subscriptions.load(Ordering::Relaxed) == 0 {
            return;
        }
        let subs = read(&self.subscribers);
        let Some(list) = subs.get(session_id) else {
            return;
        };
        let data = event.kind.carries_session().then(session).flatten();
        let frame = event_frame(event, data.as_deref());
        let epoch: Arc<str> = Arc::from(epoch);
        self.broadcast.inc_by(list.len() as u64);
        for inbox in list {
            inbox.deliver(Outbound::Event {
                session_id: session_id.clone(),
                seq: event.seq,
                epoch: Arc::clone(&epoch),
                frame: frame.clone(),
            });
        }
    }

    /// Delivers a notification (`session:updated`, `command:queued`, `input:queued`,
    /// `awaiting`) to the session's local subscribers.
    pub(crate) fn publish_notice(
        &self,
        session_id: &SessionId,
        kind: Notice,
        fields: &Map<String, Value>,
        now: Timestamp,
    ) {
        if self.subscriptions.load(Ordering::Relaxed) == 0 {
            return;
        }
        let subs = read(&self.subscribers);
        let Some(list) = subs.get(session_id) else {
            return;
        };
        let frame = notice_frame(session_id, kind, fields, now);
        for inbox in list {
            inbox.deliver(Outbound::Notice {
                session_id: session_id.clone(),
                frame: frame.clone(),
                resets: kind == Notice::SessionDeleted,
            });
        }
    }

    /// Asks every local subscriber and input long poll to re-check its sessions against
    /// storage, after a Pub/Sub outage in which messages may have been lost.
    pub(crate) fn resync_all(&self) {
        for waker in &self.input_wakers {
            waker.notify_waiters();
        }
        let subs = read(&self.subscribers);
        for (session_id, list) in subs.iter() {
            for inbox in list {
                inbox.deliver(Outbound::Resync {
                    session_id: session_id.clone(),
                });
            }
        }
    }

    /// Wakes the long polls waiting for input on this session.
    pub(crate) fn input_queued(&self, session_id: &SessionId) {
        self.input_waker(session_id).notify_waiters();
    }

    /// What an input long poll waits on. Create the `notified()` future (and `enable` it)
    /// before checking the queue, so an arrival in between is not missed.
    pub(crate) fn input_waker(&self, session_id: &SessionId) -> &Notify {
        // A specified hash: the same shard in every process, run and toolchain.
        &self.input_wakers[(crate::hash::of(session_id) % INPUT_SHARDS as u64) as usize]
    }
}

/// The frame of a stored event: the event itself, as stored (every field verbatim, `seq`
/// included), so the dashboard's views read `type`, `sessionId`, `timestamp` and the
/// event's own fields at the top level. Without a session the stored bytes are the frame
/// (no copy, no re-serialisation). `session` is the session as stored after the event (JSON):
/// `session:*` frames carry it as `data`, which the dashboard's session lists read.
pub(crate) fn event_frame(event: &StoredEvent, session: Option<&str>) -> Utf8Bytes {
    match session {
        Some(data) if event.kind.carries_session() => with_data(&event.json, data),
        _ => Utf8Bytes::try_from(event.json.clone()).unwrap_or_else(|_| Utf8Bytes::from("{}")),
    }
}

/// The event with `data` set (replacing a client-sent `data`, which would be ambiguous).
fn with_data(event: &[u8], data: &str) -> Utf8Bytes {
    let mut fields: Map<String, Value> = serde_json::from_slice(event).unwrap_or_default();
    let data = serde_json::from_str(data).unwrap_or(Value::Null);
    fields.insert("data".into(), data);
    Utf8Bytes::from(Value::Object(fields).to_string())
}

/// The frame of a notification that is not a stored event: flat, `{type, sessionId,
/// timestamp, ...fields}`, without `seq` (notices are not history). The three envelope
/// fields win over a field of the same name.
pub(crate) fn notice_frame(
    session_id: &SessionId,
    kind: Notice,
    fields: &Map<String, Value>,
    now: Timestamp,
) -> Utf8Bytes {
    let mut frame = Map::with_capacity(fields.len() + 3);
    frame.insert("type".into(), Value::from(kind.as_str()));
    frame.insert("sessionId".into(), Value::from(session_id.as_str()));
    frame.insert("timestamp".into(), Value::from(now.to_rfc3339()));
    for (k, v) in fields {
        if !frame.contains_key(k) {
            frame.insert(k.clone(), v.clone());
        }
    }
    Utf8Bytes::from(Value::Object(frame).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::EventType;
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
    fn an_event_frame_is_the_stored_event_itself() {
        let ev = event(4);
        let frame = event_frame(&ev, Some(r#"{"id":"s1"}"#));
        assert_eq!(frame.as_str().as_bytes(), &ev.json[..], "verbatim, no data");
        let shared = Bytes::from(frame);
        assert_eq!(
            shared.as_ptr(),
            ev.json.as_ptr(),
            "the stored bytes, not a copy"
        );
    }

    #[test]
    fn a_session_frame_carries_the_session_as_data() {
        let ev = StoredEvent {
            seq: 2,
            kind: EventType::SessionEnded,
            timestamp: Timestamp(0),
            json: Bytes::from_static(
                br#"{"type":"session:ended","sessionId":"s1","timestamp":"t","data":"mine","seq":2}"#,
            ),
        };
        let frame = event_frame(&ev, Some(r#"{"id":"s1","status":"completed"}"#));
        let v: Value = serde_json::from_str(frame.as_str()).unwrap();
        assert_eq!(v["type"], "session:ended");
        assert_eq!(v["seq"], 2);
        assert_eq!(v["timestamp"], "t");
        assert_eq!(v["data"]["id"], "s1");
        assert_eq!(v["data"]["status"], "completed");
    }

    #[test]
    fn a_notice_frame_is_flat_and_keeps_its_envelope() {
        let sid = SessionId::parse("s1").unwrap();
        let mut fields = Map::new();
        fields.insert("queueLength".into(), Value::from(3));
        fields.insert("type".into(), Value::from("spoofed"));
        let frame = notice_frame(&sid, Notice::InputQueued, &fields, Timestamp(0));
        let v: Value = serde_json::from_str(frame.as_str()).unwrap();
        assert_eq!(v["type"], "input:queued");
        assert_eq!(v["sessionId"], "s1");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["queueLength"], 3);
        assert!(v.get("seq").is_none() && v.get("payload").is_none());
    }

    #[tokio::test]
    async fn a_full_inbox_kicks_the_client_instead_of_growing() {
        let bus = Bus::new();
        let sid = SessionId::parse("s1").unwrap();
        let (inbox, mut rx) = Inbox::new(1, 2);
        bus.subscribe(&sid, &inbox);
        for seq in 1..=3 {
            bus.publish_event(&sid, &event(seq), "e1", || None);
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
