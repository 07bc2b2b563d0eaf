//! Turning client JSON into validated [`NewEvent`]s.
//!
//! Events are kept verbatim: only `type`, `sessionId` and `timestamp` are required and
//! checked, `user` and `eventId` must be strings when present, and every other field passes
//! through untouched. A client-sent `seq` is dropped, because `seq` is the server's.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::domain::model::{
    EventType, MAX_EPOCH_MS, NewEvent, STEP_NUMBER_RULE, SessionId, Timestamp, is_step_number,
    whole_number,
};

/// One field that failed validation: where (`events[3].type`) and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Why an event was refused. Every variant names the fields at fault; the HTTP layer
/// answers 400 with them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// Fields missing, of the wrong type or out of range; or not JSON at all.
    #[error("{message}")]
    Invalid {
        message: String,
        details: Vec<FieldError>,
    },
    /// `type` names no event type afw knows ([`EventType::ALL`] lists them).
    #[error("{message}")]
    UnknownType {
        message: String,
        details: Vec<FieldError>,
    },
}

impl IngestError {
    fn field(path: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::Invalid {
            message: format!("Validation failed: {path} {message}"),
            details: vec![FieldError::new(path, message)],
        }
    }

    /// The fields at fault.
    pub fn into_details(self) -> Vec<FieldError> {
        match self {
            Self::Invalid { details, .. } | Self::UnknownType { details, .. } => details,
        }
    }
}

/// The most events one batch may carry.
pub(crate) const MAX_BATCH: usize = 1000;

/// Parses one event from its raw JSON. `path` prefixes error paths (`events[3].type`).
///
/// `raw` is usually a slice of the request body: the event keeps it without copying until
/// the store writes the event's final form.
pub fn parse_event(raw: Bytes, path: &str) -> Result<NewEvent, IngestError> {
    let value: Value = serde_json::from_slice(&raw)
        .map_err(|e| IngestError::field(path_or_body(path), format!("is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(IngestError::field(
            path_or_body(path),
            "must be a JSON object",
        ));
    };
    // Outside its strings (which the parser checked) a JSON text is ASCII, so the verbatim
    // prefix is valid UTF-8.
    let trimmed = raw.trim_ascii();
    let raw_prefix = (!fields.contains_key("seq") && trimmed.ends_with(b"}"))
        .then(|| raw.slice_ref(&trimmed[..trimmed.len() - 1]));
    validate(fields, raw_prefix, path)
}

/// Validates an event already parsed into a map (e.g. one the server builds itself).
pub(crate) fn event_from_map(fields: Map<String, Value>) -> Result<NewEvent, IngestError> {
    validate(fields, None, "")
}

fn validate(
    mut fields: Map<String, Value>,
    raw_prefix: Option<Bytes>,
    path: &str,
) -> Result<NewEvent, IngestError> {
    let at = |field: &str| {
        if path.is_empty() {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        }
    };
    let mut details = Vec::new();

    let kind = match fields.get("type") {
        Some(Value::String(t)) if EventType::parse(t).is_none() => {
            return Err(unknown_type(t, at("type")));
        }
        v => required(&mut details, at("type"), v, kind_of),
    };
    let session_id = required(
        &mut details,
        at("sessionId"),
        fields.get("sessionId"),
        session_id_of,
    );
    let timestamp = required(
        &mut details,
        at("timestamp"),
        fields.get("timestamp"),
        timestamp_of,
    );

    for optional in ["user", "eventId"] {
        if let Some(v) = fields.get(optional)
            && !(v.is_string() || v.is_null())
        {
            details.push(FieldError::new(at(optional), "must be a string"));
        }
    }

    check_step_numbers(&fields, kind, &at, &mut details);

    match (kind, session_id, timestamp) {
        (Some(kind), Some(session_id), Some(timestamp)) if details.is_empty() => {
            // A client `seq` would be ambiguous next to ours; raw_prefix is None in that case.
            fields.remove("seq");
            Ok(NewEvent {
                kind,
                session_id,
                timestamp,
                fields,
                raw_prefix,
            })
        }
        _ => Err(IngestError::Invalid {
            message: format!("Invalid event: {}", summarize(&details)),
            details,
        }),
    }
}

/// A required field: parsed, or noted in `details` as missing or invalid.
fn required<T>(
    details: &mut Vec<FieldError>,
    path: String,
    value: Option<&Value>,
    parse: fn(&Value) -> Result<T, String>,
) -> Option<T> {
    let result = match value {
        None => Err("is required".to_owned()),
        Some(v) => parse(v),
    };
    result
        .map_err(|why| details.push(FieldError::new(path, why)))
        .ok()
}

fn kind_of(v: &Value) -> Result<EventType, String> {
    v.as_str()
        .and_then(EventType::parse)
        .ok_or_else(|| "must be a string".to_owned())
}

fn unknown_type(given: &str, path: String) -> IngestError {
    let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    IngestError::UnknownType {
        message: format!(
            "Unknown event type '{given}'. Known types: {}",
            known.join(", ")
        ),
        details: vec![FieldError::new(path, "is not a known event type")],
    }
}

fn session_id_of(v: &Value) -> Result<SessionId, String> {
    match v {
        Value::String(s) => SessionId::parse(s).map_err(|e| e.to_string()),
        _ => Err("must be a string".to_owned()),
    }
}

/// An event's `timestamp`: RFC 3339 text, or whole epoch milliseconds up to the end of year
/// 9999. The one rule for events coming in and events read back from storage.
pub(crate) fn timestamp_of(v: &Value) -> Result<Timestamp, String> {
    let why = match v {
        Value::String(s) => match Timestamp::parse_rfc3339(s) {
            Some(ts) => return Ok(ts),
            None => "must be an RFC 3339 date-time such as 2026-02-21T03:20:37.123Z",
        },
        Value::Number(_) => match whole_number(v).filter(|ms| *ms <= MAX_EPOCH_MS) {
            Some(ms) => return Ok(Timestamp(ms)),
            None => {
                "must be whole milliseconds since the epoch, up to the end of year 9999, when numeric"
            }
        },
        _ => "must be an RFC 3339 string or epoch milliseconds",
    };
    Err(why.to_owned())
}

/// `stepNumber` (on any event) and `steps[i].stepNumber` (on `chain:compiled`) must be
/// 1..=10 000 when present; `null` is allowed (the chain-parse hook sends it).
fn check_step_numbers(
    fields: &Map<String, Value>,
    kind: Option<EventType>,
    at: &dyn Fn(&str) -> String,
    details: &mut Vec<FieldError>,
) {
    if let Some(v) = fields.get("stepNumber")
        && !v.is_null()
        && !is_step_number(v)
    {
        details.push(FieldError::new(at("stepNumber"), STEP_NUMBER_RULE));
    }
    if kind != Some(EventType::ChainCompiled) {
        return;
    }
    let Some(Value::Array(steps)) = fields.get("steps") else {
        return;
    };
    for (i, step) in steps.iter().enumerate() {
        if let Some(v) = step.get("stepNumber")
            && !v.is_null()
            && !is_step_number(v)
        {
            details.push(FieldError::new(
                at(&format!("steps[{i}].stepNumber")),
                STEP_NUMBER_RULE,
            ));
        }
    }
}

fn path_or_body(path: &str) -> &str {
    if path.is_empty() { "body" } else { path }
}

fn summarize(details: &[FieldError]) -> String {
    details
        .iter()
        .map(|d| format!("{} {}", d.path, d.message))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"type":"step:spawned","sessionId":"s1","timestamp":"2026-11-20T14:00:06.222Z","stepNumber":1,"model":null}"#;

    #[test]
    fn verbatim_event_gets_seq_appended_without_reserialising() {
        let ev = parse_event(Bytes::from_static(EVENT.as_bytes()), "").unwrap();
        assert_eq!(ev.kind, EventType::StepSpawned);
        let json = ev.json_with_seq(7);
        let expected = format!("{},\"seq\":7}}", &EVENT[..EVENT.len() - 1]);
        assert_eq!(std::str::from_utf8(&json).unwrap(), expected);
        let v: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["model"], Value::Null);
    }

    #[test]
    fn step_numbers_outside_one_to_ten_thousand_are_refused() {
        for bad in ["-1", "0", "10001", "18446744073709551616", "1.5", "\"2\""] {
            let raw = format!(
                r#"{{"type":"step:spawned","sessionId":"s","timestamp":1,"stepNumber":{bad}}}"#
            );
            let err = parse_event(Bytes::from(raw), "").unwrap_err();
            let IngestError::Invalid { details, .. } = err else {
                panic!("{bad}: {err:?}")
            };
            assert_eq!(details[0].path, "stepNumber", "{bad}");
        }
        let raw = r#"{"type":"chain:compiled","sessionId":"s","timestamp":1,"steps":[{"stepNumber":null},{"stepNumber":0}]}"#;
        let err = parse_event(Bytes::from_static(raw.as_bytes()), "events[2]").unwrap_err();
        let IngestError::Invalid { details, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(details[0].path, "events[2].steps[1].stepNumber");
        for ok in ["1", "10000", "null"] {
            let raw = format!(
                r#"{{"type":"step:spawned","sessionId":"s","timestamp":1,"stepNumber":{ok}}}"#
            );
            assert!(parse_event(Bytes::from(raw), "").is_ok(), "{ok}");
        }
    }

    #[test]
    fn client_seq_is_replaced_by_the_servers() {
        let raw = r#"{"type":"file:created","sessionId":"s1","timestamp":5,"seq":99}"#;
        let ev = parse_event(Bytes::from_static(raw.as_bytes()), "").unwrap();
        let v: Value = serde_json::from_slice(&ev.json_with_seq(3)).unwrap();
        assert_eq!(v["seq"], 3);
        assert_eq!(v["timestamp"], 5);
    }

    #[test]
    fn missing_fields_are_all_reported() {
        let err = parse_event(
            Bytes::from_static(br#"{"type":"file:created"}"#),
            "events[2]",
        )
        .unwrap_err();
        let paths: Vec<String> = err.into_details().into_iter().map(|d| d.path).collect();
        assert_eq!(paths, ["events[2].sessionId", "events[2].timestamp"]);
    }

    #[test]
    fn unknown_type_names_the_known_ones() {
        let err = parse_event(
            Bytes::from_static(br#"{"type":"session:paused","sessionId":"s","timestamp":1}"#),
            "",
        )
        .unwrap_err();
        let IngestError::UnknownType { message, details } = err else {
            panic!("{err:?}")
        };
        assert!(message.contains("session:started"), "{message}");
        assert_eq!(
            details,
            [FieldError::new("type", "is not a known event type")]
        );
    }

    #[test]
    fn non_objects_and_bad_ids_are_rejected() {
        assert!(parse_event(Bytes::from_static(b"[1,2]"), "").is_err());
        assert!(
            parse_event(
                Bytes::from_static(br#"{"type":"file:created","sessionId":"a b","timestamp":1}"#),
                ""
            )
            .is_err()
        );
        assert!(
            parse_event(
                Bytes::from_static(br#"{"type":"file:created","sessionId":"a","timestamp":-1}"#),
                ""
            )
            .is_err()
        );
        assert!(
            parse_event(
                Bytes::from_static(
                    br#"{"type":"file:created","sessionId":"a","timestamp":1,"user":3}"#
                ),
                ""
            )
            .is_err()
        );
    }
}

#[cfg(test)]
mod properties {
    //! Property tests of event ingestion: any input is answered (an event or the fields at
    //! fault, never a panic); a valid event keeps every field verbatim and gets only the
    //! server's `seq`; a missing required field is named.

    use super::*;
    use crate::domain::arbitrary::json_value;
    use proptest::prelude::*;

    const REQUIRED: [&str; 3] = ["type", "sessionId", "timestamp"];

    /// Extra fields: any names but the ones the server reads, any values.
    fn extras() -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::btree_map(".{0,8}", json_value(), 0..6).prop_map(|m| {
            m.into_iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "type" | "sessionId" | "timestamp" | "user" | "eventId" | "stepNumber"
                    )
                })
                .collect()
        })
    }

    /// A valid event: its fields, its type, its session and its instant.
    fn event() -> impl Strategy<Value = (Map<String, Value>, EventType, String, u64)> {
        (
            prop::sample::select(EventType::ALL),
            "[A-Za-z0-9_.:-]{1,60}",
            0..=MAX_EPOCH_MS,
            any::<bool>(),
            extras(),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(kind, sid, ms, as_text, mut fields, client_seq)| {
                let ts = if as_text {
                    Value::from(Timestamp(ms).to_rfc3339())
                } else {
                    Value::from(ms)
                };
                fields.insert("type".into(), Value::from(kind.as_str()));
                fields.insert("sessionId".into(), Value::from(sid.as_str()));
                fields.insert("timestamp".into(), ts);
                if let Some(seq) = client_seq {
                    fields.insert("seq".into(), Value::from(seq));
                }
                (fields, kind, sid, ms)
            })
    }

    proptest! {
        #[test]
        fn any_bytes_are_an_event_or_named_faults(raw in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Err(e) = parse_event(Bytes::from(raw), "events[0]") {
                let details = e.into_details();
                prop_assert!(!details.is_empty());
                prop_assert!(details.iter().all(|d| d.path.starts_with("events[0]")), "{details:?}");
            }
        }

        #[test]
        fn any_json_object_is_an_event_or_named_faults(fields in prop::collection::btree_map(
            prop_oneof![Just("type".to_owned()), Just("sessionId".to_owned()), Just("timestamp".to_owned()), ".{0,6}"],
            json_value(),
            0..6,
        )) {
            let raw = serde_json::to_vec(&fields).unwrap();
            if let Err(e) = parse_event(Bytes::from(raw), "") {
                prop_assert!(!e.into_details().is_empty());
            }
        }

        #[test]
        fn a_valid_event_keeps_every_field_and_gets_only_the_servers_seq(
            (fields, kind, sid, ms) in event(),
            seq in 1u64..1_000_000_000,
        ) {
            let raw = serde_json::to_vec(&fields).unwrap();
            let ev = parse_event(Bytes::from(raw), "").unwrap();
            prop_assert_eq!(ev.kind, kind);
            prop_assert_eq!(ev.session_id.as_str(), sid.as_str());
            // Text instants keep milliseconds only.
            prop_assert_eq!(ev.timestamp, Timestamp(ms));
            let stored: Map<String, Value> = serde_json::from_slice(&ev.json_with_seq(seq)).unwrap();
            let mut expected = fields.clone();
            expected.insert("seq".into(), Value::from(seq));
            prop_assert_eq!(stored, expected);
        }

        #[test]
        fn a_whole_number_as_a_float_is_the_same_instant((fields, _, _, ms) in event()) {
            let mut fields = fields;
            fields.insert("timestamp".into(), Value::from(ms as f64));
            let ev = parse_event(Bytes::from(serde_json::to_vec(&fields).unwrap()), "").unwrap();
            prop_assert_eq!(ev.timestamp, Timestamp(ms));
        }

        #[test]
        fn a_missing_required_field_is_named(
            (fields, _, _, _) in event(),
            which in prop::sample::select(&REQUIRED[..]),
        ) {
            let mut fields = fields;
            fields.remove(which);
            let err = parse_event(Bytes::from(serde_json::to_vec(&fields).unwrap()), "events[3]")
                .unwrap_err();
            let paths: Vec<String> = err.into_details().into_iter().map(|d| d.path).collect();
            prop_assert_eq!(paths, vec![format!("events[3].{which}")]);
        }
    }
}
