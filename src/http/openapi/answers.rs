//! The shapes of the answers that handlers assemble as JSON by hand (listings served from
//! stored bytes, small acknowledgements), described for the OpenAPI document.
//!
//! These types are descriptions only: nothing constructs or serialises them. What keeps
//! them true is the fuzz run (`scripts/fuzz-api.sh`, every answer checked against the
//! document) and `tests/api/openapi.rs`. The stored models (`Session`, `Chain`, `Command`,
//! ...) describe themselves in `crate::domain::model`; nothing here may describe a request.
#![allow(dead_code)]

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::ingest::FieldError;
use crate::domain::model::{
    Chain, CommandStatus, CommandWire, InputItem, Session, SessionId, SessionStatus, Timestamp,
};

/// Every error: a sentence, and for a failed validation the fields at fault. Some errors
/// name what was looked for (`sessionId`, `commandId`, `chainId`) or a limit (`limit`).
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody {
    /// What went wrong, in a sentence.
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Vec<FieldError>>,
}

/// `GET /health`: alive (200 even when degraded).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Health {
    /// `degraded` when storage or the Pub/Sub subscription is down.
    #[schema(pattern = "^(ok|degraded)$")]
    status: String,
    /// `memory` or `redis`.
    storage: String,
    instance_id: String,
    /// Seconds since the instance started.
    uptime: f64,
    timestamp: Timestamp,
    websocket: WsFigures,
    /// Redis mode only.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<RedisHealth>,
    /// Unless `AFW_ARCHIVE=off`.
    #[serde(skip_serializing_if = "Option::is_none")]
    archive: Option<ArchiveHealth>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ArchiveHealth {
    /// `dir` or `postgres`.
    kind: String,
    /// `retrying` while archiving fails (the store or the archive is down).
    #[schema(pattern = "^(ok|retrying)$")]
    state: String,
    /// Sessions waiting to be archived.
    pending: u64,
    /// The last failure, while retrying.
    last_error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct WsFigures {
    clients: u64,
    subscriptions: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RedisHealth {
    connected: bool,
    writable: bool,
    latency_ms: Option<f64>,
    /// `subscribed` or `reconnecting`.
    pubsub: String,
}

/// `GET /ready`: 200 when storage answers; 503 (with `error`) when it does not or the
/// instance is shutting down.
#[derive(Serialize, ToSchema)]
pub(crate) struct Ready {
    ready: bool,
    storage: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A page of sessions, newest activity first; `nextCursor` continues it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionPage {
    count: u64,
    sessions: Vec<Session>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// A session with its chains.
#[derive(Serialize, ToSchema)]
pub(crate) struct SessionWithChains {
    #[serde(flatten)]
    session: Session,
    chains: Vec<Chain>,
    /// `true` when served from the archive (the session left live storage).
    #[serde(skip_serializing_if = "Option::is_none")]
    archived: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChainList {
    session_id: SessionId,
    count: u64,
    chains: Vec<Chain>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AwaitingSet {
    /// Always `awaiting`.
    status: String,
    session_id: SessionId,
    /// Always `awaiting_input`.
    conversation_state: String,
}

/// One event as stored and served: the event as sent, every field kept, plus `seq`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredEvent {
    #[serde(rename = "type")]
    kind: String,
    session_id: SessionId,
    /// As the client sent it (a string or epoch milliseconds).
    timestamp: Value,
    /// The event's place in its session, from 1.
    seq: u64,
}

/// What became of a stored event (`POST /api/events`; in a batch, without `success`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventStored {
    #[serde(skip_serializing_if = "Option::is_none")]
    success: Option<bool>,
    session_id: SessionId,
    /// The client's `eventId`, else `<sessionId>-<seq>`.
    event_id: String,
    seq: u64,
    /// The incarnation of the session `seq` counts in.
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<String>,
    /// The session already held this `eventId`: nothing was stored, `seq` is the original.
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
}

/// An event of a batch that was not stored: its session's append failed.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventNotStored {
    session_id: SessionId,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    error: String,
    /// The status that session's write alone would have answered.
    status: u16,
}

#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum BatchItem {
    Stored(EventStored),
    NotStored(EventNotStored),
}

/// `POST /api/events/batch`: one result per event, in the batch's order. 201 when every
/// event is stored (or was); 207 with `error` when only some sessions failed.
#[derive(Serialize, ToSchema)]
pub(crate) struct BatchStored {
    success: bool,
    /// Events stored (or already stored).
    count: u64,
    results: Vec<BatchItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A session's events in `seq` order. `more` and `nextAfter` when the page stopped at the
/// response size bound; `recovered: false` when `after` counted in another incarnation
/// (`epoch`) and the page starts over.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventList {
    session_id: SessionId,
    count: u64,
    events: Vec<StoredEvent>,
    last_seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    more: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RecentEvents {
    session_id: SessionId,
    count: u64,
    cutoff_time: Timestamp,
    events: Vec<StoredEvent>,
}

/// 201 when queued; 200 with `duplicate: true` when its id was queued before.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CommandQueued<'a> {
    success: bool,
    session_id: SessionId,
    command_id: String,
    command: CommandWire<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
}

/// The commands this poll claimed, as they were when claimed (`pending`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CommandsClaimed<'a> {
    session_id: SessionId,
    count: u64,
    commands: Vec<CommandWire<'a>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CommandAcked {
    success: bool,
    command_id: String,
    acknowledged: bool,
    status: CommandStatus,
}

/// 201 when queued; 200 with `duplicate: true` when its id was queued before.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InputQueued {
    success: bool,
    session_id: SessionId,
    input_queued: bool,
    input_id: String,
    queue_length: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
}

/// One item (`available: true`), or none: at once, after `timeout` (`timedOut`), or
/// because the instance is shutting down (`shuttingDown`; poll again).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InputPolled {
    available: bool,
    session_id: SessionId,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<InputItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timed_out: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shutting_down: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserSession {
    id: SessionId,
    status: SessionStatus,
    started_at: Timestamp,
    ended_at: Option<Timestamp>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct User {
    id: String,
    user: String,
    /// All the user's sessions; `sessions` lists at most 100, newest activity first.
    session_count: u64,
    /// A session of theirs is running and was active in the last 5 minutes.
    is_online: bool,
    sessions: Vec<UserSession>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserPage {
    count: u64,
    users: Vec<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserSessions {
    user: String,
    session_count: u64,
    sessions: Vec<Session>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct OutputBuffered {
    success: bool,
    buffered: bool,
    /// Bytes of output stored.
    bytes: u64,
    seq: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutputChunk {
    output: String,
    /// `stdout` or `stderr`.
    stream: String,
    step_number: Option<u64>,
    action: Option<String>,
    timestamp: Value,
    seq: u64,
}

/// The newest terminal output, oldest first, within `limit` and the response size bound.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TerminalBuffer {
    session_id: SessionId,
    buffer: Vec<OutputChunk>,
    /// Bytes of all the session's output.
    total_size: u64,
    returned: u64,
    /// Older output was left out.
    truncated: bool,
}

/// `GET /api/history/dates`.
#[derive(Serialize, ToSchema)]
pub(crate) struct HistoryDates {
    /// UTC dates (`YYYY-MM-DD`), newest first.
    dates: Vec<String>,
    /// Dates in all.
    total: u64,
}

/// `GET /api/history/sessions/{date}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HistorySessions {
    date: String,
    session_ids: Vec<SessionId>,
    /// Sessions of the date in all.
    total: u64,
}

/// `GET /api/history/session/{id}`: one incarnation of a session as archived.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HistorySnapshot {
    session: Session,
    /// Every stored event, in `seq` order, as served live.
    events: Vec<Value>,
    chains: Vec<Chain>,
    /// The incarnation.
    epoch: String,
    saved_at: Timestamp,
}

/// `GET /api/history/stats`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HistoryStats {
    total_dates: u64,
    total_sessions: u64,
    oldest_date: Option<String>,
    newest_date: Option<String>,
    /// `dir` or `postgres`.
    archive: String,
    retention_days: u32,
    /// Sessions waiting to be archived by this instance.
    pending: u64,
}

/// `POST /api/history/cleanup`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HistoryCleanup {
    /// Dates removed.
    deleted_count: u64,
    deleted_sessions: u64,
    message: String,
}
