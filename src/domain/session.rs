//! The session rules every backend shares, so the backends cannot drift apart: how an
//! update, an awaited prompt, a popped input item or an ack changes a session or a command,
//! and how sessions are filtered, ordered and paged.
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

/// Newest activity first, then id: the listing order of every backend.
pub(crate) fn listing_key(s: &Session) -> (std::cmp::Reverse<u64>, SessionId) {
    (std::cmp::Reverse(s.last_activity_at.0), s.id.clone())
}

/// Filters, orders and pages sessions the same way for every backend.
pub(crate) fn page_sessions(mut sessions: Vec<Session>, filter: &SessionFilter) -> SessionPage {
    sessions.retain(|s| {
        filter.status.is_none_or(|st| s.status == st)
            && filter
                .user
                .as_deref()
                .is_none_or(|u| s.user.as_deref() == Some(u))
    });
    sessions.sort_by_key(listing_key);
    let start = match &filter.cursor {
        Some(c) => {
            let key = c.key();
            sessions.partition_point(|s| listing_key(s) <= key)
        }
        None => 0,
    };
    let rest = sessions.split_off(start);
    let more = rest.len() > filter.limit;
    let page: Vec<Session> = rest.into_iter().take(filter.limit).collect();
    let next_cursor = more.then(|| page.last()).flatten().map(|s| Cursor {
        last_activity: s.last_activity_at,
        id: s.id.clone(),
    });
    SessionPage {
        sessions: page,
        next_cursor,
    }
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

    /// Sort key: larger activity first, then id ascending.
    pub fn key(&self) -> (std::cmp::Reverse<u64>, SessionId) {
        (std::cmp::Reverse(self.last_activity.0), self.id.clone())
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
