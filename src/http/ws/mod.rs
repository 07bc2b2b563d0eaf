//! The WebSocket endpoint `/ws` (contract §3): subscriptions, resume, input, heartbeat, limits.
//!
//! One task per client owns its socket. It receives stored events and notices from the
//! [`Bus`](crate::bus::Bus) through a bounded inbox and keeps, per subscribed session, the
//! last `seq` it sent: an event at or below it is a duplicate and is dropped, an event past
//! the next one reveals a gap that is filled from storage first. That one rule makes resume
//! (`after`), re-subscription and any publisher that delivers twice or skips (the Redis bridge)
//! exactly-once and in order. The task is generic over the socket so tests and the
//! simulation can drive it over any transport.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::bus::{Inbox, Outbound, event_frame};
use crate::domain::model::{SessionId, StoredEvent};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::storage::{EventPage, EventQuery};

/// How often a subscription whose catch-up failed is retried.
const RESYNC_RETRY: Duration = Duration::from_millis(500);

/// Close codes used by the server.
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

pub fn router() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

async fn upgrade(
    State(state): State<AppState>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // A plain GET, or a handshake that is not a valid WebSocket upgrade: JSON, like every
    // other error (axum's own rejection is plain text).
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return upgrade_refused(&rejection),
    };
    // The spec's limit is enforced in `Conn::handle`, which can answer with an error frame
    // and a clean 1009. tungstenite's own cap sits above it and only stops abuse: past it
    // the socket is dropped without ceremony.
    let hard_cap = state
        .config()
        .ws_max_message_bytes
        .saturating_mul(2)
        .max(64 * 1024);
    ws.max_message_size(hard_cap)
        .max_frame_size(hard_cap)
        // Buffers grow on demand; small initial ones keep 10 000 idle clients cheap.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| run(socket, state))
}

fn upgrade_refused(rejection: &WebSocketUpgradeRejection) -> Response {
    use axum::extract::ws::rejection::WebSocketUpgradeRejection as R;
    let message = match rejection {
        R::MethodNotGet(_) => "The WebSocket upgrade must be a GET",
        R::MethodNotConnect(_) => "The WebSocket upgrade must be a CONNECT (HTTP/2)",
        R::InvalidConnectionHeader(_) | R::InvalidUpgradeHeader(_) => {
            "This is the WebSocket endpoint: connect with a WebSocket client (Connection: Upgrade, Upgrade: websocket)"
        }
        R::InvalidWebSocketVersionHeader(_) => "Only WebSocket version 13 is supported",
        R::WebSocketKeyHeaderMissing(_) => "The Sec-WebSocket-Key header is missing",
        R::InvalidProtocolPseudoheader(_) => "Invalid :protocol pseudo-header",
        R::ConnectionNotUpgradable(_) => "This connection cannot be upgraded to a WebSocket",
        _ => "Invalid WebSocket upgrade request",
    };
    let mut res = crate::http::json(rejection.status(), &json!({ "error": message }));
    if rejection.status() == axum::http::StatusCode::UPGRADE_REQUIRED {
        res.headers_mut().insert(
            axum::http::header::UPGRADE,
            axum::http::HeaderValue::from_static("websocket"),
        );
    }
    res
}

/// Decrements the client count however the task ends.
struct ClientSlot<'a>(&'a AppState);

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        self.0.shared().ws_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientMessage {
    Subscribe {
        #[serde(rename = "sessionId")]
        session_id: String,
        after: Option<u64>,
    },
    Unsubscribe {
        #[serde(rename = "sessionId")]
        session_id: String,
    },
    Input {
        #[serde(rename = "sessionId")]
        session_id: String,
        payload: Value,
    },
    Ping,
}

/// Why a connection ends.
#[derive(Debug)]
enum End {
    /// The peer went away or a write failed or timed out: nothing more can be sent.
    Gone,
    /// Close with this code and reason.
    Close(u16, &'static str),
}

/// Runs one client connection to its end.
pub async fn run<S>(socket: S, state: AppState)
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
    };

    let end = if count >= cfg.ws_max_clients {
        End::Close(close::POLICY, "Too many clients")
    } else {
        let hello = json!({
            "type": "subscription_confirmed",
            "payload": { "clientId": format!("client-{id}"), "message": "Connected to afw" },
        });
        match conn.send_json(&hello).await {
            Err(end) => end,
            Ok(()) => {
                let period = Duration::from_secs(cfg.ws_heartbeat_secs);
                let mut heartbeat =
                    tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut shutdown = shared.shutdown.subscribe();
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
                                last_heard = tokio::time::Instant::now();
                                conn.handle(msg).await
                            }
                            Some(Err(e)) => Err(read_error(&e)),
                            None => Err(End::Gone),
                        },
                        _ = heartbeat.tick() => {
                            // Browsers answer protocol pings by themselves: a client from
                            // which nothing came for two heartbeats is gone or stuck.
                            if last_heard.elapsed() >= period * 2 {
                                Err(End::Close(close::POLICY, "No pong or message for two heartbeats"))
                            } else {
                                conn.heartbeat().await
                            }
                        }
                        _ = resync_retry.tick(), if conn.has_pending() => {
                            conn.retry_pending().await
                        }
                    };
                    if let Err(end) = step {
                        break end;
                    }
                }
            }
        }
    };

    for sid in conn
        .subscriptions
        .keys()
        .chain(conn.pending_subscribe.keys())
    {
        shared.bus.unsubscribe(sid, id);
    }
    if let End::Close(code, reason) = end {
        if code == close::TOO_BIG {
            let limit = state.config().ws_max_message_bytes;
            let message = format!("Message too big: the limit is {limit} bytes");
            let _ = conn.send_error(&message, None, None).await;
        }
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        if conn.send(Message::Close(Some(frame))).await.is_ok() {
            // Let the peer answer the close handshake, so our last frames are read rather
            // than discarded by a TCP reset.
            let drain = async { while let Some(Ok(_)) = stream.next().await {} };
            let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
        }
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
struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: tokio::time::Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            tokens: rate,
            last: tokio::time::Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
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

struct Conn<'a> {
    state: &'a AppState,
    sink: std::pin::Pin<Box<dyn Sink<Message, Error = axum::Error> + Send + 'a>>,
    inbox: &'a std::sync::Arc<Inbox>,
    /// Subscribed sessions and the last `seq` sent for each.
    subscriptions: BTreeMap<SessionId, u64>,
    /// Sessions whose catch-up from storage failed (storage unreachable): retried on a
    /// timer; their live events are held back until then.
    pending_resync: std::collections::BTreeSet<SessionId>,
    /// Subscriptions whose first read of storage failed, with their `after`: confirmed
    /// (and replayed) by the retry timer once storage answers.
    pending_subscribe: BTreeMap<SessionId, Option<u64>>,
    send_timeout: Duration,
    bucket: TokenBucket,
}

impl Conn<'_> {
    async fn send(&mut self, msg: Message) -> Result<(), End> {
        match tokio::time::timeout(self.send_timeout, self.sink.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(End::Gone),
        }
    }

    async fn send_json(&mut self, value: &Value) -> Result<(), End> {
        self.send(Message::Text(Utf8Bytes::from(value.to_string())))
            .await
    }

    async fn send_error(
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

    async fn heartbeat(&mut self) -> Result<(), End> {
        self.send(Message::Ping(bytes::Bytes::new())).await?;
        self.send_json(&json!({ "type": "pong" })).await
    }

    async fn deliver(&mut self, out: Outbound) -> Result<(), End> {
        match out {
            Outbound::Resync { session_id } => self.resync(&session_id).await,
            Outbound::Notice {
                session_id,
                frame,
                resets,
            } => {
                if let Some(last) = self.subscriptions.get_mut(&session_id) {
                    if resets {
                        *last = 0;
                    }
                    self.send(Message::Text(frame)).await?;
                }
                Ok(())
            }
            Outbound::Event {
                session_id,
                seq,
                frame,
            } => {
                let Some(&last) = self.subscriptions.get(&session_id) else {
                    return Ok(());
                };
                if seq <= last {
                    return Ok(());
                }
                if seq > last + 1 && !self.fill_gap(&session_id, last, seq - 1).await? {
                    // The missing events cannot be read now: hold this one back too, and
                    // retry from storage (which has them all, in order) until it answers.
                    self.pending_resync.insert(session_id);
                    return Ok(());
                }
                self.send(Message::Text(frame)).await?;
                self.subscriptions.insert(session_id, seq);
                Ok(())
            }
        }
    }

    /// Sends the stored events in `(after, up_to]`, or `recovered: false` when storage no
    /// longer holds them all. `Ok(false)` when storage cannot be read right now: nothing was
    /// sent and the cursor did not move.
    async fn fill_gap(&mut self, sid: &SessionId, after: u64, up_to: u64) -> Result<bool, End> {
        let query = EventQuery {
            after: Some(after),
            limit: (up_to - after) as usize,
            ..EventQuery::default()
        };
        let Ok(page) = self.state.store().read_events(sid, query).await else {
            return Ok(false);
        };
        if !page.covers(after) {
            self.subscriptions.insert(sid.clone(), up_to);
            self.confirm(sid, page.last_seq, Some(false)).await?;
            return Ok(true);
        }
        let events: Vec<&StoredEvent> = page.events.iter().filter(|e| e.seq <= up_to).collect();
        self.replay(sid, &events).await?;
        Ok(true)
    }

    /// Sends stored events read back from storage, moving the cursor with each. A
    /// `session:*` frame carries the session as it is stored now (read once per replay;
    /// omitted if that read fails): the state after the event itself is not kept.
    async fn replay(&mut self, sid: &SessionId, events: &[&StoredEvent]) -> Result<(), End> {
        let mut session: Option<Option<String>> = None;
        for ev in events {
            if ev.kind.carries_session() && session.is_none() {
                let current = self.state.store().get_session(sid).await.ok().flatten();
                session = Some(current.and_then(|s| serde_json::to_string(&s).ok()));
            }
            let frame = event_frame(ev, session.as_ref().and_then(|s| s.as_deref()));
            self.send(Message::Text(frame)).await?;
            self.subscriptions.insert(sid.clone(), ev.seq);
        }
        Ok(())
    }

    /// Brings a subscription up to what storage holds: fills a gap, or says
    /// `recovered: false` when the session started over. If storage cannot be read, the
    /// session stays marked and the retry timer comes back to it.
    async fn resync(&mut self, sid: &SessionId) -> Result<(), End> {
        let Some(&last) = self.subscriptions.get(sid) else {
            self.pending_resync.remove(sid);
            return Ok(());
        };
        let query = EventQuery {
            limit: 0,
            ..EventQuery::default()
        };
        let done = match self.state.store().read_events(sid, query).await {
            Ok(page) if page.last_seq > last => self.fill_gap(sid, last, page.last_seq).await?,
            Ok(page) if page.last_seq < last => {
                // Storage holds less than this client has seen: the session was lost
                // (e.g. Redis restarted without its data) and began again. The client must
                // reload; delivery goes on from the new sequence.
                self.subscriptions.insert(sid.clone(), page.last_seq);
                self.confirm(sid, page.last_seq, Some(false)).await?;
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
    async fn retry_pending(&mut self) -> Result<(), End> {
        let subscribes: Vec<(SessionId, Option<u64>)> = self
            .pending_subscribe
            .iter()
            .map(|(sid, after)| (sid.clone(), *after))
            .collect();
        for (sid, after) in subscribes {
            self.subscribe(sid, after).await?;
        }
        let pending: Vec<SessionId> = self.pending_resync.iter().cloned().collect();
        for sid in pending {
            self.resync(&sid).await?;
        }
        Ok(())
    }

    /// A new session would exceed `AFW_WS_MAX_SUBSCRIPTIONS` (re-subscribing is fine).
    fn at_subscription_cap(&self, sid: &SessionId) -> bool {
        let known =
            self.subscriptions.contains_key(sid) || self.pending_subscribe.contains_key(sid);
        !known
            && self.subscriptions.len() + self.pending_subscribe.len()
                >= self.state.config().ws_max_subscriptions
    }

    fn has_pending(&self) -> bool {
        !self.pending_resync.is_empty() || !self.pending_subscribe.is_empty()
    }

    async fn confirm(
        &mut self,
        sid: &SessionId,
        last_seq: u64,
        recovered: Option<bool>,
    ) -> Result<(), End> {
        let mut payload =
            json!({ "message": format!("Subscribed to session {sid}"), "lastSeq": last_seq });
        if let Some(r) = recovered {
            payload["recovered"] = Value::from(r);
        }
        self.send_json(
            &json!({ "type": "subscription_confirmed", "sessionId": sid, "payload": payload }),
        )
        .await
    }

    async fn handle(&mut self, msg: Message) -> Result<(), End> {
        let text = match msg {
            Message::Text(text) if text.len() > self.state.config().ws_max_message_bytes => {
                return Err(End::Close(close::TOO_BIG, "Message too big"));
            }
            Message::Text(text) => text,
            Message::Close(_) => return Err(End::Gone),
            // tungstenite answers pings itself; pongs need nothing.
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
            Message::Binary(data) if data.len() > self.state.config().ws_max_message_bytes => {
                return Err(End::Close(close::TOO_BIG, "Message too big"));
            }
            Message::Binary(_) => {
                return self
                    .send_error(
                        "Binary messages are not supported; send JSON text",
                        None,
                        None,
                    )
                    .await;
            }
        };
        if !self.bucket.take() {
            let limit = self.state.config().ws_rate_limit;
            return self
                .send_error(
                    &format!(
                        "Rate limit exceeded: at most {limit} messages per second; message dropped"
                    ),
                    None,
                    None,
                )
                .await;
        }
        let msg: ClientMessage = match serde_json::from_str(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                return self
                    .send_error(&format!("Invalid message: {e}"), None, None)
                    .await;
            }
        };
        match msg {
            ClientMessage::Ping => self.send_json(&json!({ "type": "pong" })).await,
            ClientMessage::Subscribe { session_id, after } => match SessionId::parse(&session_id) {
                Ok(sid) if self.at_subscription_cap(&sid) => {
                    let limit = self.state.config().ws_max_subscriptions;
                    let message = format!(
                        "Too many subscriptions: a client may follow {limit} sessions; unsubscribe from one first"
                    );
                    self.send_error(&message, Some(&session_id), None).await
                }
                Ok(sid) => self.subscribe(sid, after).await,
                Err(e) => {
                    self.send_error(&format!("Invalid sessionId: {e}"), Some(&session_id), None)
                        .await
                }
            },
            ClientMessage::Unsubscribe { session_id } => {
                if let Ok(sid) = SessionId::parse(&session_id) {
                    let was_pending = self.pending_subscribe.remove(&sid).is_some();
                    self.pending_resync.remove(&sid);
                    if self.subscriptions.remove(&sid).is_some() || was_pending {
                        self.state.shared().bus.unsubscribe(&sid, self.inbox.id);
                    }
                }
                Ok(())
            }
            ClientMessage::Input {
                session_id,
                payload,
            } => {
                let sid = match SessionId::parse(&session_id) {
                    Ok(sid) => sid,
                    Err(e) => {
                        return self
                            .send_error(&format!("Invalid sessionId: {e}"), Some(&session_id), None)
                            .await;
                    }
                };
                if payload.is_null() {
                    return self
                        .send_error("Input payload is required", Some(&session_id), None)
                        .await;
                }
                match crate::http::queue_input(self.state, &sid, payload, None).await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let body = e.body();
                        self.send_error(
                            &e.to_string(),
                            Some(&session_id),
                            body.get("details").cloned(),
                        )
                        .await
                    }
                }
            }
        }
    }

    async fn subscribe(&mut self, sid: SessionId, after: Option<u64>) -> Result<(), End> {
        // Subscribe first: events stored from now on are queued for us; anything both
        // queued and read below is dropped as a duplicate by its seq.
        self.state.shared().bus.subscribe(&sid, self.inbox);
        let limit = match after {
            Some(_) => self.state.config().max_events_per_session,
            None => 0,
        };
        let query = EventQuery {
            after,
            limit,
            ..EventQuery::default()
        };
        let page: EventPage = match self.state.store().read_events(&sid, query).await {
            Ok(page) => page,
            Err(e) => {
                // Keep the subscription and confirm it once storage answers (the retry
                // timer comes back to it): the client need not subscribe again. Events
                // stored meanwhile are at or below the cursor that read will return.
                let first_failure = self.pending_subscribe.insert(sid.clone(), after).is_none();
                if first_failure {
                    let message = format!(
                        "{}; the subscription will be confirmed when it is back",
                        ApiError::from(e)
                    );
                    return self.send_error(&message, Some(sid.as_str()), None).await;
                }
                return Ok(());
            }
        };
        self.pending_subscribe.remove(&sid);
        match after {
            None => {
                let last = *self
                    .subscriptions
                    .entry(sid.clone())
                    .or_insert(page.last_seq);
                self.confirm(&sid, last, None).await
            }
            Some(after) => {
                let recovered = page.covers(after);
                self.subscriptions.insert(sid.clone(), page.last_seq);
                self.confirm(&sid, page.last_seq, Some(recovered)).await?;
                if recovered {
                    let events: Vec<&StoredEvent> = page.events.iter().collect();
                    self.replay(&sid, &events).await?;
                }
                Ok(())
            }
        }
    }
}
