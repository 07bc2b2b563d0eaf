//! The storage port: everything the service keeps, behind one trait.
//!
//! Each method is one atomic operation with the semantics of contract §2 and §4, so that a
//! backend shared by several instances (Redis) can implement it without read-modify-write
//! races. A backend also owns the change feed: it hands every stored event, in `seq` order,
//! to the local [`crate::bus::Bus`] (and, for Redis, to the other instances), and wakes input
//! long polls. Every mutation emits its notice (`session:updated`, `input:queued`, ...)
//! inside the same atomic step as the write (the same Lua script, the same memory lock), so
//! a stored write never fails because of its notice and a notice never announces a write
//! that did not happen. Handlers never publish anything themselves.
//!
//! Backends: [`memory::MemoryStore`] (default) and [`redis::RedisStore`] (`REDIS_URL`).
//! The session rules both share live in [`crate::domain::session`].

mod listing;
pub mod memory;
pub(crate) mod redis;

use std::future::Future;
use std::pin::Pin;

use serde_json::{Map, Value};

use crate::domain::model::{
    Chain, Command, InputItem, LastPrompt, NewEvent, Session, SessionId, StoredEvent, Timestamp,
};

pub use crate::domain::session::{
    Cursor, SessionFilter, SessionPage, SessionUpdate, UserCursor, UserSessions, UsersPage,
};

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Errors of the storage layer. The HTTP mapping lives in [`crate::http::error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached; nothing was written.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("session {0} already exists")]
    SessionExists(SessionId),
    #[error("session {0} not found")]
    SessionNotFound(SessionId),
    #[error("input queue is full ({limit} items)")]
    InputQueueFull { limit: usize },
    #[error("command queue is full ({limit} pending commands)")]
    CommandQueueFull { limit: usize },
    /// A client key (idempotency key) already names a command of another session.
    #[error("command id {0} is taken by another session")]
    CommandIdTaken(String),
    /// Stored data that cannot be decoded: a bug or outside interference.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// TTLs and caps, shared by every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Sessions, events and chains (default 24 h).
    pub session_ttl_ms: u64,
    /// Command and input queues (default 5 min).
    pub queue_ttl_ms: u64,
    /// Oldest events are trimmed past this (default 10 000).
    pub max_events_per_session: usize,
    /// Input beyond this is refused with 429 (default 100).
    pub max_input_queue: usize,
    /// Finished command records kept per session (pending ones are never dropped).
    pub max_command_records: usize,
    /// Pending commands per session; more are refused with 429.
    pub max_pending_commands: usize,
    /// Bytes of events a session keeps; the oldest are trimmed beyond it.
    pub session_budget_bytes: usize,
    /// Memory storage only: most sessions kept; the least recently active are evicted.
    pub max_sessions: usize,
    /// Memory storage only: bytes of events kept across all sessions; the least recently
    /// active sessions are evicted beyond it.
    pub memory_budget_bytes: usize,
}

impl StoreLimits {
    /// The defaults; `config.rs` derives its `DEFAULT_*` settings from these, so each
    /// limit is written once.
    pub const DEFAULT: Self = Self {
        session_ttl_ms: 24 * 3600 * 1000,
        queue_ttl_ms: 5 * 60 * 1000,
        max_events_per_session: 10_000,
        max_input_queue: 100,
        max_command_records: 1_000,
        max_pending_commands: 100,
        session_budget_bytes: 16 * 1024 * 1024,
        max_sessions: 10_000,
        memory_budget_bytes: 1024 * 1024 * 1024,
    };
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The client keys of queued input a session remembers (the newest), each for the queue TTL.
pub const MAX_INPUT_KEYS: usize = 1_000;

/// What became of queued input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// The queue's length now.
    pub queue_length: usize,
    /// Its key was queued before: nothing was queued now.
    pub duplicate: bool,
}

/// What became of one appended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Its `seq`: newly assigned, or, for a duplicate, the one it was stored with.
    pub seq: u64,
    /// The session already held an event with this `eventId`; nothing was stored.
    pub duplicate: bool,
    /// The incarnation of the session the `seq` counts in.
    pub epoch: String,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct EventQuery {
    /// Only events with a larger `seq` (the exact resume cursor).
    pub after: Option<u64>,
    /// Only events whose timestamp is at or after this.
    pub since: Option<Timestamp>,
    pub limit: usize,
    /// Take the newest `limit` matches instead of the oldest (still returned in order).
    pub newest: bool,
}

#[derive(Debug, Clone, Default)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    /// The session's highest `seq` so far (0 when it has none or does not exist).
    pub last_seq: u64,
    /// The oldest `seq` still stored, if any.
    pub first_seq: Option<u64>,
    /// The session's incarnation (`None`: it does not exist, or predates epochs).
    pub epoch: Option<String>,
}

impl EventPage {
    /// Whether every event after `after` is still stored (a resume is gap-free).
    pub fn covers(&self, after: u64) -> bool {
        after == self.last_seq
            || (after < self.last_seq && self.first_seq.is_some_and(|first| first <= after + 1))
    }
}

#[derive(Debug, Clone, Default)]
pub struct StoreHealth {
    pub connected: bool,
    /// Writes are accepted (Redis may answer PING but refuse writes).
    pub writable: bool,
    pub latency_ms: Option<f64>,
    /// Why not, when not connected or not writable (no secrets: no URL).
    pub error: Option<String>,
}

impl StoreHealth {
    pub fn is_ok(&self) -> bool {
        self.connected && self.writable
    }
}

/// Everything the service stores. Every method is atomic; see the module docs.
pub trait Store: Send + Sync + 'static {
    /// `"memory"` or `"redis"`.
    fn backend(&self) -> &'static str;

    fn health(&self) -> StoreFuture<'_, StoreHealth>;

    /// Stores a new session; `SessionExists` if the id is taken.
    fn create_session(&self, session: Session) -> StoreFuture<'_, Session>;
    fn get_session<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Session>>;
    /// Applies `update` and announces `session:updated` (with the session as `data`).
    fn update_session<'a>(
        &'a self,
        id: &'a SessionId,
        update: SessionUpdate,
    ) -> StoreFuture<'a, Option<Session>>;
    /// Removes the session with its events, chains and queues, and announces
    /// `session:deleted`. `false` if it did not exist.
    fn delete_session<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool>;
    /// One page of sessions in listing order, read from an index: its cost follows the
    /// page, not the number of sessions.
    fn list_sessions(&self, filter: SessionFilter) -> StoreFuture<'_, SessionPage>;
    /// One page of users, the most recently active first, each with their session count and
    /// newest `per_user` sessions.
    fn list_users(
        &self,
        limit: usize,
        cursor: Option<UserCursor>,
        per_user: usize,
    ) -> StoreFuture<'_, UsersPage>;

    fn chains<'a>(&'a self, session: &'a SessionId) -> StoreFuture<'a, Vec<Chain>>;

    /// The session and its chains as one consistent snapshot.
    fn session_with_chains<'a>(
        &'a self,
        id: &'a SessionId,
    ) -> StoreFuture<'a, Option<(Session, Vec<Chain>)>> {
        Box::pin(async move {
            let Some(session) = self.get_session(id).await? else {
                return Ok(None);
            };
            Ok(Some((session, self.chains(id).await?)))
        })
    }
    fn chain<'a>(&'a self, chain_id: &'a str) -> StoreFuture<'a, Option<Chain>>;

    /// Appends events of one session atomically: assigns `seq`s, derives the session and
    /// chains (creating the session if needed), trims, refreshes TTLs and publishes.
    /// An event whose `eventId` the session already holds (stored earlier, or earlier in
    /// `events`) is not stored again: it is answered with the original `seq` as a
    /// duplicate. Returns one outcome per event, in order.
    fn append_events<'a>(
        &'a self,
        session: &'a SessionId,
        events: Vec<NewEvent>,
    ) -> StoreFuture<'a, Vec<Appended>>;
    fn read_events<'a>(
        &'a self,
        session: &'a SessionId,
        query: EventQuery,
    ) -> StoreFuture<'a, EventPage>;

    /// Marks the session as awaiting input and announces `awaiting` with `fields`;
    /// `SessionNotFound` if it does not exist.
    fn set_awaiting<'a>(
        &'a self,
        session: &'a SessionId,
        prompt: LastPrompt,
        fields: Map<String, Value>,
    ) -> StoreFuture<'a, Session>;
    /// Queues input, announces `input:queued` and wakes the session's long polls on every
    /// instance; returns the queue length. `InputQueueFull` at the cap. With `keyed`, the
    /// item's id is the client's idempotency key: an id the session queued within the
    /// queue TTL (the last [`MAX_INPUT_KEYS`] of them) queues nothing again and answers a
    /// duplicate.
    fn push_input<'a>(
        &'a self,
        session: &'a SessionId,
        item: InputItem,
        keyed: bool,
    ) -> StoreFuture<'a, Pushed>;
    /// Pops the oldest input item and sets the session `idle`, atomically.
    fn pop_input<'a>(&'a self, session: &'a SessionId) -> StoreFuture<'a, Option<InputItem>>;

    /// Queues a pending command and announces `command:queued`; `SessionNotFound` if the
    /// session does not exist. A command whose id the session already holds (a client's
    /// idempotency key, retried) queues nothing and answers the stored command as a
    /// duplicate; `CommandIdTaken` when another session holds the id.
    fn push_command(&self, command: Command) -> StoreFuture<'_, (Command, bool)>;
    /// Claims every pending command (each is handed to exactly one claim). With a lease,
    /// a claimed command not acknowledged within it becomes pending again. The returned
    /// commands show the status they had when claimed.
    fn claim_commands<'a>(
        &'a self,
        session: &'a SessionId,
        lease_ms: Option<u64>,
    ) -> StoreFuture<'a, Vec<Command>>;
    fn ack_command<'a>(
        &'a self,
        command_id: &'a str,
        result: Option<Value>,
        error: Option<Value>,
    ) -> StoreFuture<'a, Option<Command>>;
    fn get_command<'a>(&'a self, command_id: &'a str) -> StoreFuture<'a, Option<Command>>;

    /// Archival bookkeeping ([`crate::archive::archiver`]): marks `session` as due for
    /// archival as of now (a later mark moves it), until [`Store::archive_filed`] clears it,
    /// so that any instance can finish what one that crashed had started. `false` when
    /// [`MAX_ARCHIVE_DUE`] sessions are due already (nothing is marked).
    fn archive_mark<'a>(&'a self, session: &'a SessionId) -> StoreFuture<'a, bool>;
    /// Sessions marked due at or before `before`, the longest due first, at most `limit`.
    fn archive_due(&self, before: Timestamp, limit: usize) -> StoreFuture<'_, Vec<SessionId>>;
    /// Takes (or renews) the lease `name` for this instance for `ttl_ms`: `None` when this
    /// instance holds it now, else how many ms the other holder's lease still runs.
    fn take_lease<'a>(&'a self, name: &'a str, ttl_ms: u64) -> StoreFuture<'a, Option<u64>>;
    /// `session` was filed as read at `read_at`: clears its mark unless it was marked again
    /// since, and gives back this instance's lease on it ([`archive_lease`]).
    fn archive_filed<'a>(
        &'a self,
        session: &'a SessionId,
        read_at: Timestamp,
    ) -> StoreFuture<'a, ()>;
}

/// Sessions due for archival, at most, in the store's due set.
pub const MAX_ARCHIVE_DUE: usize = 100_000;

/// The name of the lease that makes one instance the writer of `session`'s snapshot.
pub fn archive_lease(session: &SessionId) -> String {
    format!("archive:{session}")
}
