//! The session rules every backend shares, so the backends cannot drift apart: how an
//! update, an awaited prompt, a popped input item or an ack changes a session or a command,
//! and the order sessions are listed in.
//!
//! Pure functions over [`crate::domain::model`] values: nothing here may store, lock, read a
//! clock or know a backend; callers pass `now`.

use serde_json::{Map, Value};

use crate::domain::model::{
    Command, CommandStatus, ConversationState, LastPrompt, Session, SessionId, SessionStatus,
    Timestamp,
};

/// The fields of `session:updated`: the session as stored after the change, as `data` (the
/// dashboard's session lists read it, as on `session:started`/`ended` frames).
pub(crate) fn updated_fields(s: &Session) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert(
        "data".into(),
        serde_json::to_value(s).unwrap_or(Value::Null),
    );
    fields
}

/// The fields of `input:queued`.
pub(crate) fn input_queued_fields(input_id: &str, queue_length: usize) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("inputId".into(), Value::from(input_id));
    fields.insert("queueLength".into(), Value::from(queue_length));
    fields
}

/// The fields of `command:queued`.
pub(crate) fn command_queued_fields(command: &Command) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert(
        "command".into(),
        serde_json::to_value(command).unwrap_or(Value::Null),
    );
    fields
}

/// `PUT /api/sessions/:id`: finishing a session stamps its end and duration.
pub(crate) fn apply_update(s: &mut Session, update: SessionUpdate, now: Timestamp) {
    if let Some(status) = update.status {
        s.status = status;
        if matches!(status, SessionStatus::Completed | SessionStatus::Failed) {
            let ended = s.ended_at.unwrap_or(now);
            s.ended_at = Some(ended);
            s.duration = Some(ended.0.saturating_sub(s.started_at.0));
        }
    }
    if update.summary.is_some() {
        s.summary = update.summary;
    }
    if update.end_reason.is_some() {
        s.end_reason = update.end_reason;
    }
    if update.metadata.is_some() {
        s.metadata = update.metadata;
    }
    s.last_activity_at = now;
}

/// The session now waits for input.
pub(crate) fn apply_awaiting(s: &mut Session, prompt: LastPrompt, now: Timestamp) {
    s.conversation_state = Some(ConversationState::AwaitingInput);
    s.last_prompt = Some(prompt);
    s.last_activity_at = now;
}

/// An input item was handed to the waiting agent.
pub(crate) fn apply_input_popped(s: &mut Session, now: Timestamp) {
    s.conversation_state = Some(ConversationState::Idle);
    s.last_activity_at = now;
}

/// An acknowledged command failed when the ack carries a (non-null) error.
pub(crate) fn ack_status(error: Option<&Value>) -> CommandStatus {
    if error.is_some_and(|e| !e.is_null()) {
        CommandStatus::Failed
    } else {
        CommandStatus::Acked
    }
}

/// The listing order of every backend: newest activity first, ties by id, descending (the
/// order of Redis's `ZRANGE ... BYSCORE REV`).
pub(crate) type ListingKey = (std::cmp::Reverse<u64>, std::cmp::Reverse<SessionId>);

pub(crate) fn listing_key(s: &Session) -> ListingKey {
    (
        std::cmp::Reverse(s.last_activity_at.0),
        std::cmp::Reverse(s.id.clone()),
    )
}

/// Position in the user listing: the user's last activity (newest first), then the user
/// (descending), as `<ms>:<user>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCursor {
    pub last_activity: Timestamp,
    pub user: String,
}

impl UserCursor {
    pub fn encode(&self) -> String {
        format!("{}:{}", self.last_activity.0, self.user)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (ms, user) = s.split_once(':')?;
        if user.is_empty() {
            return None;
        }
        Some(Self {
            last_activity: Timestamp(ms.parse().ok()?),
            user: user.to_owned(),
        })
    }

    /// Sort key: later activity first, then larger name.
    pub(crate) fn key(&self) -> UserKey {
        (
            std::cmp::Reverse(self.last_activity.0),
            std::cmp::Reverse(self.user.clone()),
        )
    }
}

/// The user listing order: newest activity first, ties by name descending.
pub(crate) type UserKey = (std::cmp::Reverse<u64>, std::cmp::Reverse<String>);

/// One user on a page of users.
#[derive(Debug, Clone)]
pub struct UserSessions {
    pub user: String,
    /// The user's sessions still indexed (expired ones are dropped as reads pass them).
    pub session_count: usize,
    /// Their newest sessions, at most the page's `per_user`.
    pub sessions: Vec<Session>,
}

#[derive(Debug, Clone, Default)]
pub struct UsersPage {
    pub users: Vec<UserSessions>,
    pub next_cursor: Option<UserCursor>,
}

/// Position in the session listing: newest activity first, then id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub last_activity: Timestamp,
    pub id: SessionId,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}:{}", self.last_activity.0, self.id)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (ms, id) = s.split_once(':')?;
        Some(Self {
            last_activity: Timestamp(ms.parse().ok()?),
            id: SessionId::parse(id).ok()?,
        })
    }

    /// Sort key: larger activity first, then larger id (see [`listing_key`]).
    pub(crate) fn key(&self) -> ListingKey {
        (
            std::cmp::Reverse(self.last_activity.0),
            std::cmp::Reverse(self.id.clone()),
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub status: Option<SessionStatus>,
    pub user: Option<String>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

#[derive(Debug, Clone)]
pub struct SessionPage {
    pub sessions: Vec<Session>,
    pub next_cursor: Option<Cursor>,
}

/// `PUT /api/sessions/:id`.
#[derive(Debug, Clone, Default)]
pub struct SessionUpdate {
    pub status: Option<SessionStatus>,
    pub summary: Option<String>,
    pub end_reason: Option<String>,
    pub metadata: Option<Value>,
}
