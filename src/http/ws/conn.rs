//! One client connection, owned by one task: its subscriptions and the last `seq` sent for
//! each, the inbox from the bus, gap filling and replays from storage, the heartbeat, the
//! send timeout and the per-connection message budget.
//!
//! Nothing here may parse what a client sends (that is [`super::protocol`]).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{Value, json};

use tokio::sync::mpsc;

use crate::bus::{Inbox, Outbound, event_frame};
use crate::domain::model::{SessionId, StoredEvent};
use crate::http::AppState;
use crate::metrics::{DirectionLabels, ReasonLabels};
use crate::storage::EventQuery;
use prometheus_client::metrics::counter::Counter;

use super::close;

/// How often a subscription whose catch-up failed is retried.
const RESYNC_RETRY: Duration = Duration::from_millis(500);

/// How far a client has been sent a session: the last `seq` of one incarnation (`epoch`,
/// '' while unknown: the session did not exist yet, or predates epochs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Cursor {
    pub(super) seq: u64,
    pub(super) epoch: String,
}

impl Cursor {
    pub(super) fn at(seq: u64, epoch: Option<&str>) -> Self {
        Self {
            seq,
            epoch: epoch.unwrap_or_default().to_owned(),
        }
    }

    /// Whether `epoch` is another incarnation than the one this cursor counts in.
    pub(super) fn other_epoch(&self, epoch: Option<&str>) -> bool {
        matches!(epoch, Some(e) if !e.is_empty() && !self.epoch.is_empty() && e != self.epoch)
    }
}

/// What a subscription asked to resume from: its `after` and the `epoch` it counts in.
pub(super) type Resume = (Option<u64>, Option<String>);

/// Decrements the client count however the task ends.
struct ClientSlot<'a>(&'a AppState);

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        self.0.shared().ws_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection ends.
#[derive(Debug)]
pub(super) enum End {
    /// The peer went away or a write failed or timed out: nothing more can be sent.
    Gone,
    /// Close with this code and reason.
    Close(u16, &'static str),
}

/// Runs one client connection to its end.
pub(crate) async fn run<S>(socket: S, state: AppState)
where
    S: Sink<Message, Error = axum::Error> + Stream<Item = Result<Message, axum::Error>> + Send,
{
    let shared = state.shared();
    let cfg = state.config();
    let count = shared.ws_clients.fetch_add(1, Ordering::Relaxed);
    let _slot = ClientSlot(&state);
    let (sink, mut stream) = socket.split();
    let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let (inbox, mut rx) = Inbox::new(id, cfg.ws_send_queue);
    let mut conn = Conn {
        state: &state,
        sink: Box::pin(sink),
        inbox: &inbox,
        subscriptions: BTreeMap::new(),
        pending_resync: std::collections::BTreeSet::new(),
        pending_subscribe: BTreeMap::new(),
        send_timeout: Duration::from_secs(cfg.ws_send_timeout_secs),
        bucket: TokenBucket::new(cfg.ws_rate_limit),
        frames_out: frames(&state, "out"),
    };
    let frames_in = frames(&state, "in");

    let end = if count >= cfg.ws_max_clients {
        End::Close(close::POLICY, "Too many clients")
    } else {
        let hello = json!({
            "type": "subscription_confirmed",
            "payload": { "clientId": format!("client-{id}"), "message": "Connected to afw" },
        });
        match conn.send_json(&hello).await {
            Err(end) => end,
            Ok(()) => serve(&mut conn, &mut stream, &mut rx, &frames_in).await,
        }
    };
    let reason = ReasonLabels {
        reason: disconnect_reason(&end),
    };
    shared.metrics.ws.disconnects.get_or_create(&reason).inc();
    for sid in conn
        .subscriptions
        .keys()
        .chain(conn.pending_subscribe.keys())
    {
        shared.bus.unsubscribe(sid, id);
    }
    if let End::Close(code, reason) = end {
        close_with(&mut conn, &mut stream, code, reason).await;
    }
}

/// Serves a greeted client until something ends the connection: shutdown, a full send
/// queue, the peer, silence for two heartbeats, or a protocol error.
async fn serve<St>(
    conn: &mut Conn<'_>,
    stream: &mut St,
    rx: &mut mpsc::Receiver<Outbound>,
    frames_in: &Counter,
) -> End
where
    St: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let (state, inbox) = (conn.state, conn.inbox);
    let period = Duration::from_secs(state.config().ws_heartbeat_secs);
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = state.shared().shutdown.subscribe();
    let mut last_heard = tokio::time::Instant::now();
    let mut resync_retry = tokio::time::interval(RESYNC_RETRY);
    resync_retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *shutdown.borrow_and_update() {
            break End::Close(close::GOING_AWAY, "Server is shutting down");
        }
        let step = tokio::select! {
            biased;
            _ = shutdown.changed() => Ok(()),
            _ = inbox.kick.notified() => {
                Err(End::Close(close::TRY_AGAIN_LATER, "Send queue full: client too slow"))
            }
            out = rx.recv() => match out {
                Some(out) => conn.deliver(out).await,
                None => Err(End::Gone),
            },
            msg = stream.next() => match msg {
                Some(Ok(msg)) => {
                    frames_in.inc();
                    last_heard = tokio::time::Instant::now();
                    conn.handle(msg).await
                }
                Some(Err(e)) => Err(read_error(&e)),
                None => Err(End::Gone),
            },
            _ = heartbeat.tick() => {
                // Browsers answer protocol pings by themselves: a client from which
                // nothing came for two heartbeats is gone or stuck.
                if last_heard.elapsed() >= period * 2 {
                    Err(End::Close(close::POLICY, "No pong or message for two heartbeats"))
                } else {
                    conn.heartbeat().await
                }
            }
            _ = resync_retry.tick(), if conn.has_pending() => conn.retry_pending().await,
        };
        if let Err(end) = step {
            break end;
        }
    }
}

fn frames(state: &AppState, direction: &'static str) -> Counter {
    let labels = DirectionLabels { direction };
    state
        .shared()
        .metrics
        .ws
        .frames
        .get_or_create(&labels)
        .clone()
}

/// Why a connection ended, as the disconnect counter's label.
fn disconnect_reason(end: &End) -> &'static str {
    match end {
        End::Gone => "gone",
        End::Close(close::GOING_AWAY, _) => "shutdown",
        End::Close(close::TRY_AGAIN_LATER, _) => "slow_client",
        End::Close(close::POLICY, reason) if reason.starts_with("No pong") => "liveness",
        End::Close(close::POLICY, _) => "capacity",
        End::Close(_, _) => "protocol",
    }
}

/// Closes with `code`: says why first when a message was too big, then waits (briefly) for
/// the peer's close, so the last frames are read rather than discarded by a TCP reset.
async fn close_with<St>(conn: &mut Conn<'_>, stream: &mut St, code: u16, reason: &'static str)
where
    St: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    if code == close::TOO_BIG {
        let limit = conn.state.config().ws_max_message_bytes;
        let message = format!("Message too big: the limit is {limit} bytes");
        let _ = conn.send_error(&message, None, None).await;
    }
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    if conn.send(Message::Close(Some(frame))).await.is_ok() {
        let drain = async { while let Some(Ok(_)) = stream.next().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    }
}

/// A failed read: a client that broke the protocol or sent invalid UTF-8 is told so with
/// the close code RFC 6455 names (1002, 1007, 1009); a vanished one is just gone.
fn read_error(e: &axum::Error) -> End {
    use tokio_tungstenite::tungstenite::Error as WsError;
    tracing::debug!(error = %e, "WebSocket read failed");
    let cause = std::error::Error::source(e).and_then(|c| c.downcast_ref::<WsError>());
    match cause {
        Some(WsError::Protocol(_)) => End::Close(close::PROTOCOL, "Protocol error"),
        Some(WsError::Utf8(_)) => {
            End::Close(close::INVALID_DATA, "Text message is not valid UTF-8")
        }
        Some(WsError::Capacity(_)) => End::Close(close::TOO_BIG, "Message too big"),
        _ => End::Gone,
    }
}

/// 50 messages a second by default, with a burst of one second's worth.
pub(super) struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: tokio::time::Instant,
}

impl TokenBucket {
    pub(super) fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            tokens: rate,
            last: tokio::time::Instant::now(),
        }
    }

    pub(super) fn take(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub(super) struct Conn<'a> {
    pub(super) state: &'a AppState,
    pub(super) sink: std::pin::Pin<Box<dyn Sink<Message, Error = axum::Error> + Send + 'a>>,
    pub(super) inbox: &'a std::sync::Arc<Inbox>,
    /// Subscribed sessions and, for each, how far this client has been sent.
    pub(super) subscriptions: BTreeMap<SessionId, Cursor>,
    /// Sessions whose catch-up from storage failed (storage unreachable): retried on a
    /// timer; their live events are held back until then.
    pub(super) pending_resync: std::collections::BTreeSet<SessionId>,
    /// Subscriptions whose first read of storage failed, with their `after`: confirmed
    /// (and replayed) by the retry timer once storage answers.
    pub(super) pending_subscribe: BTreeMap<SessionId, Resume>,
    pub(super) send_timeout: Duration,
    pub(super) bucket: TokenBucket,
    /// Frames written to this client (the instance's counter).
    pub(super) frames_out: Counter,
}

impl Conn<'_> {
    pub(super) async fn send(&mut self, msg: Message) -> Result<(), End> {
        match tokio::time::timeout(self.send_timeout, self.sink.send(msg)).await {
            Ok(Ok(())) => {
                self.frames_out.inc();
                Ok(())
            }
            Ok(Err(_)) | Err(_) => Err(End::Gone),
        }
    }

    pub(super) async fn send_json(&mut self, value: &Value) -> Result<(), End> {
        self.send(Message::Text(Utf8Bytes::from(value.to_string())))
            .await
    }

    pub(super) async fn send_error(
        &mut self,
        message: &str,
        session_id: Option<&str>,
        details: Option<Value>,
    ) -> Result<(), End> {
        let mut frame = json!({ "type": "error", "payload": message });
        if let Some(sid) = session_id {
            frame["sessionId"] = Value::from(sid);
        }
        if let Some(details) = details {
            frame["details"] = details;
        }
        self.send_json(&frame).await
    }

    pub(super) async fn heartbeat(&mut self) -> Result<(), End> {
        self.send(Message::Ping(bytes::Bytes::new())).await?;
        self.send_json(&json!({ "type": "pong" })).await
    }

    pub(super) async fn deliver(&mut self, out: Outbound) -> Result<(), End> {
        match out {
            Outbound::Resync { session_id } => self.resync(&session_id).await,
            Outbound::Notice {
                session_id,
                frame,
                resets,
            } => {
                if let Some(cursor) = self.subscriptions.get_mut(&session_id) {
                    if resets {
                        *cursor = Cursor::default();
                    }
                    self.send(Message::Text(frame)).await?;
                }
                Ok(())
            }
            Outbound::Event {
                session_id,
                seq,
                epoch,
                frame,
            } => {
                let Some(cursor) = self.subscriptions.get_mut(&session_id) else {
                    return Ok(());
                };
                if cursor.other_epoch(Some(&epoch)) {
                    // Another incarnation of the session: its seqs say nothing about ours.
                    // Storage decides (a late event of the old one is dropped).
                    return self.resync(&session_id).await;
                }
                if cursor.epoch.is_empty() {
                    cursor.epoch = epoch.to_string();
                }
                let last = cursor.seq;
                if seq <= last {
                    return Ok(());
                }
                if seq > last + 1 {
                    if !self.fill_gap(&session_id, last, seq - 1).await? {
                        // The missing events cannot be read now: hold this one back too, and
                        // retry from storage (which has them all, in order) until it answers.
                        self.pending_resync.insert(session_id);
                        return Ok(());
                    }
                    // Storage did not reach this event's predecessor: the event is not
                    // stored (an event of an earlier incarnation of the session, published
                    // before Redis lost its data and delivered late). Not sent: what the
                    // client has is what storage holds.
                    if self.subscriptions.get(&session_id).map(|c| c.seq) != Some(seq - 1) {
                        return Ok(());
                    }
                }
                self.send(Message::Text(frame)).await?;
                if let Some(cursor) = self.subscriptions.get_mut(&session_id) {
                    cursor.seq = seq;
                }
                Ok(())
            }
        }
    }

    /// Sends the stored events in `(after, up_to]`, or `recovered: false` when storage no
    /// longer holds them all. `Ok(false)` when storage cannot be read right now: nothing was
    /// sent and the cursor did not move.
    pub(super) async fn fill_gap(
        &mut self,
        sid: &SessionId,
        after: u64,
        up_to: u64,
    ) -> Result<bool, End> {
        let query = EventQuery {
            after: Some(after),
            limit: (up_to - after) as usize,
            ..EventQuery::default()
        };
        let Ok(page) = self.state.store().read_events(sid, query).await else {
            return Ok(false);
        };
        let known = self.subscriptions.get(sid).cloned().unwrap_or_default();
        if known.other_epoch(page.epoch.as_deref()) {
            self.restart(sid, page.epoch.as_deref()).await?;
            return Ok(true);
        }
        if !page.covers(after) {
            // The client reloads from `lastSeq`; the cursor follows storage, never past it.
            let cursor = Cursor::at(up_to.min(page.last_seq), page.epoch.as_deref());
            self.subscriptions.insert(sid.clone(), cursor);
            self.confirm(sid, page.last_seq, Some(false), page.epoch.as_deref())
                .await?;
            return Ok(true);
        }
        let events: Vec<&StoredEvent> = page.events.iter().filter(|e| e.seq <= up_to).collect();
        self.replay(sid, &events).await?;
        self.state.shared().metrics.ws.gaps_repaired.inc();
        Ok(true)
    }

    /// Sends stored events read back from storage, moving the cursor with each. A
    /// `session:*` frame carries the session as it is stored now (read once per replay;
    /// omitted if that read fails): the state after the event itself is not kept.
    pub(super) async fn replay(
        &mut self,
        sid: &SessionId,
        events: &[&StoredEvent],
    ) -> Result<(), End> {
        let mut session: Option<Option<String>> = None;
        for ev in events {
            if ev.kind.carries_session() && session.is_none() {
                let current = self.state.store().get_session(sid).await.ok().flatten();
                session = Some(current.and_then(|s| serde_json::to_string(&s).ok()));
            }
            let frame = event_frame(ev, session.as_ref().and_then(|s| s.as_deref()));
            self.send(Message::Text(frame)).await?;
            self.subscriptions.entry(sid.clone()).or_default().seq = ev.seq;
        }
        Ok(())
    }

    /// The session began again under another epoch: says `recovered: false` with the new
    /// `epoch` and `lastSeq: 0` (the client drops what it had) and starts the client over
    /// at seq 0 of the new incarnation, replaying what storage holds of it. If storage
    /// cannot be read now, the retry timer comes back to it.
    pub(super) async fn restart(
        &mut self,
        sid: &SessionId,
        epoch: Option<&str>,
    ) -> Result<(), End> {
        let query = EventQuery {
            after: Some(0),
            limit: self.state.config().max_events_per_session,
            ..EventQuery::default()
        };
        let Ok(page) = self.state.store().read_events(sid, query).await else {
            self.pending_resync.insert(sid.clone());
            return Ok(());
        };
        let epoch = page.epoch.as_deref().or(epoch);
        // As after any `recovered: false`, delivery goes on after the confirmed `lastSeq`:
        // 0 when the new incarnation's history is whole (it follows from seq 1), else
        // where storage is (the client reloads what is left).
        let from = if page.covers(0) { 0 } else { page.last_seq };
        self.subscriptions
            .insert(sid.clone(), Cursor::at(from, epoch));
        self.confirm(sid, from, Some(false), epoch).await?;
        if from == 0 {
            let events: Vec<&StoredEvent> = page.events.iter().collect();
            self.replay(sid, &events).await?;
        }
        Ok(())
    }

    /// Brings a subscription up to what storage holds: fills a gap, or says
    /// `recovered: false` when the session started over. If storage cannot be read, the
    /// session stays marked and the retry timer comes back to it.
    pub(super) async fn resync(&mut self, sid: &SessionId) -> Result<(), End> {
        let Some(known) = self.subscriptions.get(sid).cloned() else {
            self.pending_resync.remove(sid);
            return Ok(());
        };
        self.state.shared().metrics.ws.resyncs.inc();
        let last = known.seq;
        let query = EventQuery {
            limit: 0,
            ..EventQuery::default()
        };
        let done = match self.state.store().read_events(sid, query).await {
            Ok(page) if known.other_epoch(page.epoch.as_deref()) => {
                // The session began again (deleted and recreated, or Redis lost its data):
                // whatever its seqs, they are not this client's.
                self.pending_resync.remove(sid);
                return self.restart(sid, page.epoch.as_deref()).await;
            }
            Ok(page) if page.last_seq > last => self.fill_gap(sid, last, page.last_seq).await?,
            Ok(page) if page.last_seq < last => {
                // Storage holds less than this client has seen: the session was lost
                // (e.g. Redis restarted without its data) and began again. The client must
                // reload; delivery goes on from the new sequence.
                let cursor = Cursor::at(page.last_seq, page.epoch.as_deref());
                self.subscriptions.insert(sid.clone(), cursor);
                self.confirm(sid, page.last_seq, Some(false), page.epoch.as_deref())
                    .await?;
                true
            }
            Ok(_) => true,
            Err(_) => false,
        };
        if done {
            self.pending_resync.remove(sid);
        } else {
            self.pending_resync.insert(sid.clone());
        }
        Ok(())
    }

    /// Retries every subscription whose confirmation or catch-up from storage failed.
    pub(super) async fn retry_pending(&mut self) -> Result<(), End> {
        let subscribes: Vec<(SessionId, Resume)> = self
            .pending_subscribe
            .iter()
            .map(|(sid, resume)| (sid.clone(), resume.clone()))
            .collect();
        for (sid, (after, epoch)) in subscribes {
            self.subscribe(sid, after, epoch).await?;
        }
        let pending: Vec<SessionId> = self.pending_resync.iter().cloned().collect();
        for sid in pending {
            self.resync(&sid).await?;
        }
        Ok(())
    }

    /// A new session would exceed `AFW_WS_MAX_SUBSCRIPTIONS` (re-subscribing is fine).
    pub(super) fn at_subscription_cap(&self, sid: &SessionId) -> bool {
        let known =
            self.subscriptions.contains_key(sid) || self.pending_subscribe.contains_key(sid);
        !known
            && self.subscriptions.len() + self.pending_subscribe.len()
                >= self.state.config().ws_max_subscriptions
    }

    pub(super) fn has_pending(&self) -> bool {
        !self.pending_resync.is_empty() || !self.pending_subscribe.is_empty()
    }
}
