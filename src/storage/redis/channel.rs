//! The Pub/Sub message of contract §4, the one shape instances tell each other about stored
//! events and notices in: encoded here by the store, decoded here by the bridge.
//!
//! Nothing here may publish, subscribe or touch the bus.

use crate::domain::model::{Session, SessionId, StoredEvent};

use super::codec::to_json;

/// The Pub/Sub message of a stored event (contract §4), carrying the event verbatim, and for
/// the event types whose frames carry it, the session after the event as `data`.
pub fn event_message(
    sid: &SessionId,
    ev: &StoredEvent,
    instance: &str,
    session: Option<&Session>,
) -> String {
    let data = match session {
        Some(s) if ev.kind.carries_session() => format!(r#","data":{}"#, to_json(s)),
        _ => String::new(),
    };
    format!(
        r#"{{"sessionId":{},"seq":{},"type":"{}","timestamp":"{}","instanceId":{}{data},"event":{}}}"#,
        to_json(sid),
        ev.seq,
        ev.kind.as_str(),
        ev.timestamp.to_rfc3339(),
        to_json(&instance),
        std::str::from_utf8(&ev.json).unwrap_or("null")
    )
}
