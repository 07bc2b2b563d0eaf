//! The data model: the wire types of contract §1 and the few newtypes the core passes around.
//!
//! Field names here are wire names (camelCase through serde). This module only describes and
//! validates data; it does not store, derive or broadcast anything. The wire types also
//! describe themselves for the OpenAPI document (`utoipa::ToSchema`), so the document
//! cannot drift from the types; nothing here serves or assembles that document.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch, on the wire as RFC 3339 UTC with milliseconds and `Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            ),
            // Only reachable for instants past year 9999.
            Err(_) => "9999-12-31T23:59:59.999Z".to_owned(),
        }
    }

    /// Parses any RFC 3339 date-time (any offset, any fraction). Instants before 1970 are
    /// rejected: nothing this service records happened then.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        if let Some(ts) = Self::parse_canonical(s) {
            return Some(ts);
        }
        let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        u64::try_from(ms).ok().map(Timestamp)
    }

    /// Fast path for the form every hook sends, `YYYY-MM-DDTHH:MM:SS.sssZ`; anything else
    /// goes through the general RFC 3339 parser.
    fn parse_canonical(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 24
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
            || b[19] != b'.'
            || b[23] != b'Z'
        {
            return None;
        }
        let num = |from: usize, to: usize| -> Option<u32> {
            b[from..to].iter().try_fold(0u32, |acc, c| {
                c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
            })
        };
        let month = time::Month::try_from(u8::try_from(num(5, 7)?).ok()?).ok()?;
        let date = time::Date::from_calendar_date(
            i32::try_from(num(0, 4)?).ok()?,
            month,
            u8::try_from(num(8, 10)?).ok()?,
        )
        .ok()?;
        let time = time::Time::from_hms_milli(
            u8::try_from(num(11, 13)?).ok()?,
            u8::try_from(num(14, 16)?).ok()?,
            u8::try_from(num(17, 19)?).ok()?,
            u16::try_from(num(20, 23)?).ok()?,
        )
        .ok()?;
        let ms = date.with_time(time).assume_utc().unix_timestamp_nanos() / 1_000_000;
        u64::try_from(ms).ok().map(Timestamp)
    }

    /// The UTC calendar date, `YYYY-MM-DD`.
    pub fn date(self) -> String {
        self.to_rfc3339()[..10].to_owned()
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 timestamp"))
    }
}

/// A session id: 1..=200 characters of `[A-Za-z0-9_.:-]`, client-chosen or generated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SessionId(Arc<str>);

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to 200 characters of A-Z, a-z, 0-9, '_', '.', ':' or '-'")]
pub struct InvalidId;

impl SessionId {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        if is_valid_id(s) {
            Ok(Self(Arc::from(s)))
        } else {
            Err(InvalidId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SessionId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A date-time from 1970 on, as a JSON Schema pattern on its year.
pub const YEAR_1970_ON: &str = "^(19[7-9][0-9]|[2-9][0-9]{3})-";

/// The latest instant afw accepts as epoch milliseconds: the end of year 9999.
pub const MAX_EPOCH_MS: u64 = 253_402_300_799_999;

/// 2^53 - 1: the largest whole number a float (and so a JavaScript client) holds exactly.
pub const MAX_SAFE_INTEGER: u64 = 9_007_199_254_740_991;

/// The id rule as a JSON Schema pattern (the same as [`is_valid_id`]).
pub const ID_PATTERN: &str = "^[A-Za-z0-9_.:-]{1,200}$";

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            // Instants before 1970 are refused: nothing this service records happened then.
            .pattern(Some(YEAR_1970_ON))
            .description(Some(
                "RFC 3339 UTC with milliseconds, e.g. 2026-02-21T03:20:37.123Z",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

impl utoipa::PartialSchema for SessionId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(ID_PATTERN))
            .description(Some("1 to 200 characters of A-Z, a-z, 0-9, _ . : -"))
            .into()
    }
}

impl utoipa::ToSchema for SessionId {}

/// The id rule shared by sessions, chains, commands and users.
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Pending,
    InProgress,
    Completed,
    Failed,
    Skipped,
}

impl SessionStatus {
    pub const ALL: [SessionStatus; 5] = [
        Self::Pending,
        Self::InProgress,
        Self::Completed,
        Self::Failed,
        Self::Skipped,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }

    /// The wire name (the serde name; a test holds the two together), also how the
    /// listing indexes spell a status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// Also used for chains and steps, which share the session's status vocabulary.
pub type Status = SessionStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationState {
    Idle,
    AwaitingInput,
    ReceivingInput,
    Active,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastPrompt {
    pub text: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quick_responses: Option<Vec<Value>>,
    pub timestamp: Timestamp,
}

/// A session as stored and as listed (`GET /api/sessions/:id` adds its chains).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: SessionId,
    /// Empty until a `session:started` event or the creating request names it.
    pub cwd: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub status: SessionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_state: Option<ConversationState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_prompt: Option<LastPrompt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_chain: Option<String>,
    pub started_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// Milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_steps_executed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_chains_completed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical_errors: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    pub last_activity_at: Timestamp,
    pub event_count: u64,
    /// This incarnation of the session, drawn when it was created: a session recreated
    /// under the same id (after a delete, or after Redis lost its data) has another, so a
    /// subscriber's `seq` cursor is never taken for one of the new incarnation. Empty for
    /// sessions stored before epochs existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub epoch: String,
}

impl Session {
    /// A fresh session with nothing but its id, status and times.
    pub fn new(
        id: SessionId,
        status: SessionStatus,
        started_at: Timestamp,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            cwd: String::new(),
            hostname: None,
            platform: None,
            user: None,
            status,
            conversation_state: None,
            last_prompt: None,
            current_chain: None,
            started_at,
            ended_at: None,
            duration: None,
            end_reason: None,
            summary: None,
            total_steps_executed: None,
            total_chains_completed: None,
            critical_errors: None,
            metadata: None,
            last_activity_at: now,
            event_count: 0,
            epoch: String::new(),
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(
            self.status,
            SessionStatus::Completed | SessionStatus::Failed
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainStep {
    pub step_number: u32,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub inputs: Value,
    pub waits_for: Vec<Value>,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Chain {
    pub id: String,
    pub session_id: SessionId,
    pub title: String,
    pub steps: Vec<ChainStep>,
    /// `flow | composed | meta-task`.
    pub source: String,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub status: Status,
    pub compiled_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub successful_steps: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_steps: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_steps: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_step: Option<u32>,
}

macro_rules! event_types {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// The 19 event types hooks send. Anything else is rejected with the list.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum EventType { $($variant),* }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name),* }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($name => Some(EventType::$variant),)* _ => None }
            }
        }
    };
}

event_types! {
    SessionStarted => "session:started",
    SessionEnded => "session:ended",
    ChainCompiled => "chain:compiled",
    ChainStarted => "chain:started",
    ChainCompleted => "chain:completed",
    StepSpawned => "step:spawned",
    StepStarted => "step:started",
    StepCompleted => "step:completed",
    StepFailed => "step:failed",
    InteractionAwaitingInput => "interaction:awaiting-input",
    InteractionInputReceived => "interaction:input-received",
    FileCreated => "file:created",
    FileModified => "file:modified",
    FileDeleted => "file:deleted",
    RegistryLineUpdated => "registry:line-updated",
    ExecutionLogCreated => "execution:log-created",
    TerminalOutput => "terminal:output",
    ErrorOccurred => "error:occurred",
    WarningOccurred => "warning:occurred",
}

/// The notifications that are not stored events (contract §3): sent flat, without `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    #[serde(rename = "command:queued")]
    CommandQueued,
    #[serde(rename = "input:queued")]
    InputQueued,
    #[serde(rename = "session:updated")]
    SessionUpdated,
    #[serde(rename = "awaiting")]
    Awaiting,
    /// The session's history was removed (deleted or evicted): a recreated session starts
    /// again at `seq` 1, so subscribers' cursors start over too.
    #[serde(rename = "session:deleted")]
    SessionDeleted,
}

impl Notice {
    pub const ALL: [Notice; 5] = [
        Self::CommandQueued,
        Self::InputQueued,
        Self::SessionUpdated,
        Self::Awaiting,
        Self::SessionDeleted,
    ];

    /// The frame's `type` (the serde name; a test holds the two together).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CommandQueued => "command:queued",
            Self::InputQueued => "input:queued",
            Self::SessionUpdated => "session:updated",
            Self::Awaiting => "awaiting",
            Self::SessionDeleted => "session:deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.as_str() == s)
    }
}

/// The largest `stepNumber` a chain step, a step event or a command may name.
pub const MAX_STEP_NUMBER: u64 = 10_000;
/// The rule for `stepNumber`, in the API's words.
pub const STEP_NUMBER_RULE: &str = "must be a whole number from 1 to 10000";

/// Whether `v` is a valid `stepNumber` (1..=10 000).
pub fn is_step_number(v: &serde_json::Value) -> bool {
    whole_number(v).is_some_and(|n| (1..=MAX_STEP_NUMBER).contains(&n))
}

/// `v` as a non-negative whole number: `7` and also `7.0`, which is the same number in JSON
/// (and what JSON Schema's `integer` admits); `None` for fractions, negatives and the rest.
pub fn whole_number(v: &serde_json::Value) -> Option<u64> {
    let n = v.as_number()?;
    n.as_u64().or_else(|| {
        let f = n.as_f64()?;
        // Up to 2^53 - 1 every whole f64 is exact.
        (f.fract() == 0.0 && (0.0..=MAX_SAFE_INTEGER as f64).contains(&f)).then_some(f as u64)
    })
}

impl EventType {
    /// Whether this event's WebSocket frame carries the session as `data` (contract §3): the
    /// dashboard's session lists read it from `session:started` and `session:ended`.
    pub fn carries_session(self) -> bool {
        matches!(self, Self::SessionStarted | Self::SessionEnded)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event that passed validation and waits for its `seq`.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: EventType,
    pub session_id: SessionId,
    pub timestamp: Timestamp,
    /// Every field the client sent, verbatim (minus any `seq` of its own).
    pub fields: Map<String, Value>,
    /// The client's JSON object without its closing brace, when it can be reused verbatim:
    /// the stored form is then `prefix + ,"seq":N}` with no re-serialisation.
    pub(crate) raw_prefix: Option<Bytes>,
}

impl NewEvent {
    /// The stored JSON of this event once it has its `seq`.
    pub fn json_with_seq(&self, seq: u64) -> Bytes {
        match &self.raw_prefix {
            Some(prefix) => {
                let mut out = Vec::with_capacity(prefix.len() + 28);
                out.extend_from_slice(prefix);
                out.extend_from_slice(b",\"seq\":");
                push_decimal(&mut out, seq);
                out.push(b'}');
                Bytes::from(out)
            }
            None => {
                let mut fields = self.fields.clone();
                fields.insert("seq".to_owned(), Value::from(seq));
                // Serialising a Map of Values cannot fail.
                Bytes::from(serde_json::to_vec(&fields).unwrap_or_default())
            }
        }
    }

    pub fn str_field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }

    /// The client's `eventId`, the key that makes a retried write idempotent.
    pub fn event_id(&self) -> Option<&str> {
        self.str_field("eventId")
    }

    pub fn u64_field(&self, key: &str) -> Option<u64> {
        self.fields.get(key).and_then(whole_number)
    }
}

/// Appends the decimal digits of `n` (hot path: no formatting machinery).
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A stored event: its place in the session's sequence and its JSON, serialised once.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: u64,
    pub kind: EventType,
    pub timestamp: Timestamp,
    /// The event object as stored and served, `seq` included.
    pub json: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommandType {
    Pause,
    Resume,
    Cancel,
    Abort,
    Retry,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommandStatus {
    Pending,
    Delivered,
    Acked,
    Failed,
    Expired,
}

impl CommandStatus {
    pub const ALL: [CommandStatus; 5] = [
        Self::Pending,
        Self::Delivered,
        Self::Acked,
        Self::Failed,
        Self::Expired,
    ];

    /// The wire name (`pending`, `delivered`, ...); a test holds it to the serde derive,
    /// and the Lua scripts get these names as their `S` table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Acked => "acked",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    /// Parses a wire name through the serde derive; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        use serde::de::IntoDeserializer;
        let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            s.into_deserializer();
        Self::deserialize(de).ok()
    }
}

/// A command as stored; [`Command::wire`] gives the shape every reader expects.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub id: String,
    pub session_id: SessionId,
    pub kind: CommandType,
    pub payload: Map<String, Value>,
    pub status: CommandStatus,
    pub issued_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    pub acked_at: Option<Timestamp>,
    pub result: Option<Value>,
    pub error: Option<Value>,
    /// Lease mode: when a delivered, unacknowledged command becomes pending again.
    pub lease_until: Option<Timestamp>,
}

/// The wire form of a command. The duplicated fields exist because the three real readers
/// each read a different subset (contract §1).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Command)]
pub struct CommandWire<'a> {
    pub id: &'a str,
    pub command_id: &'a str,
    pub session_id: &'a SessionId,
    #[serde(rename = "type")]
    pub kind: CommandType,
    #[schema(value_type = Object)]
    pub payload: &'a Map<String, Value>,
    pub status: CommandStatus,
    pub issued_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub error: Option<&'a Value>,
    pub command: CommandBody<'a>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CommandBody<'a> {
    #[serde(rename = "type")]
    pub kind: CommandType,
    #[schema(value_type = Object)]
    pub payload: &'a Map<String, Value>,
}

impl Command {
    pub fn wire(&self) -> CommandWire<'_> {
        CommandWire {
            id: &self.id,
            command_id: &self.id,
            session_id: &self.session_id,
            kind: self.kind,
            payload: &self.payload,
            status: self.status,
            issued_at: self.issued_at,
            delivered_at: self.delivered_at,
            acked_at: self.acked_at,
            result: self.result.as_ref(),
            error: self.error.as_ref(),
            command: CommandBody {
                kind: self.kind,
                payload: &self.payload,
            },
        }
    }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.wire().serialize(s)
    }
}

/// One queued piece of input for a waiting agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InputItem {
    pub id: String,
    pub input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Value>,
    pub timestamp: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_the_serde_names() {
        for status in SessionStatus::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
            assert_eq!(SessionStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn notice_names_are_the_serde_names() {
        for notice in Notice::ALL {
            assert_eq!(serde_json::to_value(notice).unwrap(), notice.as_str());
            assert_eq!(Notice::parse(notice.as_str()), Some(notice));
        }
        assert_eq!(Notice::parse("event"), None);
    }

    #[test]
    fn command_status_names_are_the_serde_names() {
        use CommandStatus::*;
        for status in [Pending, Delivered, Acked, Failed, Expired] {
            let serde_name = serde_json::to_value(status).unwrap();
            assert_eq!(serde_name, status.as_str());
            assert_eq!(CommandStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(CommandStatus::parse("done"), None);
        assert_eq!(CommandStatus::parse("Pending"), None);
    }

    #[test]
    fn timestamps_round_trip_with_millisecond_precision() {
        let ts = Timestamp::parse_rfc3339("2026-02-21T03:20:37.123Z").unwrap();
        assert_eq!(ts.to_rfc3339(), "2026-02-21T03:20:37.123Z");
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        let offset = Timestamp::parse_rfc3339("2026-02-21T05:20:37.1+02:00").unwrap();
        assert_eq!(offset.to_rfc3339(), "2026-02-21T03:20:37.100Z");
        assert_eq!(offset.date(), "2026-02-21");
        assert!(Timestamp::parse_rfc3339("yesterday").is_none());
        assert!(Timestamp::parse_rfc3339("1969-12-31T23:59:59Z").is_none());
        // The canonical fast path agrees with the general parser and rejects what it must.
        for s in [
            "2026-11-20T14:00:04.148Z",
            "2000-02-29T23:59:59.999Z",
            "1970-01-01T00:00:00.000Z",
        ] {
            let general = OffsetDateTime::parse(s, &Rfc3339)
                .unwrap()
                .unix_timestamp_nanos()
                / 1_000_000;
            assert_eq!(
                Timestamp::parse_canonical(s),
                Some(Timestamp(general as u64)),
                "{s}"
            );
        }
        for s in [
            "2026-02-30T00:00:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2026-01-01T24:00:00.000Z",
            "2026-01-01T00:00:00.00xZ",
        ] {
            assert_eq!(Timestamp::parse_canonical(s), None, "{s}");
            assert_eq!(Timestamp::parse_rfc3339(s), None, "{s}");
        }
        let mut out = Vec::new();
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            out.clear();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn ids_follow_the_spec_alphabet_and_length() {
        assert!(SessionId::parse("7f3c2a1e-5b9d-4e8f-a6c2-1d0e9b8a7c65").is_ok());
        assert!(SessionId::parse("a.b:c_d-1").is_ok());
        assert!(SessionId::parse("").is_err());
        assert!(SessionId::parse("../etc").is_err());
        assert!(SessionId::parse("has space").is_err());
        assert!(SessionId::parse(&"x".repeat(200)).is_ok());
        assert!(SessionId::parse(&"x".repeat(201)).is_err());
    }

    #[test]
    fn every_event_type_parses_back() {
        assert_eq!(EventType::ALL.len(), 19);
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(*t));
        }
        assert_eq!(EventType::parse("session:paused"), None);
    }
}
