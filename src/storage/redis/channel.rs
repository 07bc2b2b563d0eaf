//! The Pub/Sub message of contract §4, the one shape instances tell each other about stored
//! events and notices in: encoded here by the store, decoded here by the bridge.
//!
//! Nothing here may publish, subscribe or touch the bus.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::domain::model::{EventType, Notice, Session, SessionId, StoredEvent, Timestamp};

use super::codec::to_json;

/// The Pub/Sub message of a stored event (contract §4), carrying the event verbatim, and for
/// the event types whose frames carry it, the session after the event as `data`.
pub(super) fn event_message(
    sid: &SessionId,
    ev: &StoredEvent,
    epoch: &str,
    instance: &str,
    session: Option<&Session>,
) -> String {
    let data = match session {
        Some(s) if ev.kind.carries_session() => format!(r#","data":{}"#, to_json(s)),
        _ => String::new(),
    };
    format!(
        r#"{{"sessionId":{},"seq":{},"epoch":{},"type":"{}","timestamp":"{}","instanceId":{}{data},"event":{}}}"#,
        to_json(sid),
        ev.seq,
        to_json(&epoch),
        ev.kind.as_str(),
        ev.timestamp.to_rfc3339(),
        to_json(&instance),
        std::str::from_utf8(&ev.json).unwrap_or("null")
    )
}

/// The Pub/Sub message of a notice (contract §4): its kind, when, from which instance, and
/// its fields as `payload`.
pub(super) fn notice_message(
    sid: &SessionId,
    kind: Notice,
    timestamp: Timestamp,
    instance: &str,
    payload: &Map<String, Value>,
) -> String {
    serde_json::json!({
        "sessionId": sid,
        "notice": kind,
        "timestamp": timestamp,
        "instanceId": instance,
        "payload": payload,
    })
    .to_string()
}

/// Either kind of message, as the bridge reads it.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "sessionId")]
    session_id: SessionId,
    seq: Option<u64>,
    /// The session's incarnation (absent from instances older than epochs).
    #[serde(default)]
    epoch: String,
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    timestamp: Option<&'a str>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    /// The session after the event, for `session:*` events.
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    notice: Option<&'a str>,
    payload: Option<Map<String, Value>>,
}

/// A decoded message.
#[derive(Debug)]
pub(super) enum Received {
    /// A stored event, verbatim, and the session after it for `session:*` events.
    Event {
        session_id: SessionId,
        event: StoredEvent,
        epoch: String,
        data: Option<String>,
    },
    Notice {
        session_id: SessionId,
        kind: Notice,
        fields: Map<String, Value>,
        timestamp: Timestamp,
    },
}

/// Decodes one message. `Ok(None)`: valid JSON naming neither a known event nor a known
/// notice (a newer instance's message, say), which the bridge skips.
pub(super) fn decode(payload: &[u8]) -> Result<Option<Received>, serde_json::Error> {
    let msg: Message<'_> = serde_json::from_slice(payload)?;
    let timestamp = msg.timestamp.and_then(Timestamp::parse_rfc3339);
    if let (Some(seq), Some(kind), Some(ts), Some(event)) = (
        msg.seq,
        msg.kind.and_then(EventType::parse),
        timestamp,
        msg.event,
    ) {
        let event = StoredEvent {
            seq,
            kind,
            timestamp: ts,
            json: bytes::Bytes::copy_from_slice(event.get().as_bytes()),
        };
        let data = msg.data.map(|d| d.get().to_owned());
        return Ok(Some(Received::Event {
            session_id: msg.session_id,
            event,
            epoch: msg.epoch,
            data,
        }));
    }
    Ok(msg
        .notice
        .and_then(Notice::parse)
        .map(|kind| Received::Notice {
            session_id: msg.session_id,
            kind,
            fields: msg.payload.unwrap_or_default(),
            timestamp: timestamp.unwrap_or_default(),
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::EventType;

    #[test]
    fn an_event_message_decodes_to_the_event_it_was_encoded_from() {
        let sid = SessionId::parse("s1").unwrap();
        let event = StoredEvent {
            seq: 7,
            kind: EventType::parse("file:created").unwrap(),
            timestamp: Timestamp(1_795_183_200_000),
            json: bytes::Bytes::from_static(br#"{"type":"file:created","seq":7}"#),
        };
        let msg = event_message(&sid, &event, "k3j9x0a1b", "afw-1", None);
        let Some(Received::Event {
            session_id,
            event: back,
            epoch,
            data,
        }) = decode(msg.as_bytes()).unwrap()
        else {
            panic!("{msg}")
        };
        assert_eq!((session_id, data), (sid, None));
        assert_eq!(epoch, "k3j9x0a1b");
        assert_eq!(
            (back.seq, back.kind, back.timestamp),
            (7, event.kind, event.timestamp)
        );
        assert_eq!(back.json, event.json);
    }

    #[test]
    fn a_notice_message_decodes_to_its_kind_and_fields() {
        let sid = SessionId::parse("s1").unwrap();
        let mut fields = Map::new();
        fields.insert("queueLength".into(), Value::from(2));
        let msg = notice_message(
            &sid,
            Notice::InputQueued,
            Timestamp(5_000),
            "afw-1",
            &fields,
        );
        let Some(Received::Notice {
            session_id,
            kind,
            fields: back,
            timestamp,
        }) = decode(msg.as_bytes()).unwrap()
        else {
            panic!("{msg}")
        };
        assert_eq!(
            (session_id, kind, timestamp),
            (sid, Notice::InputQueued, Timestamp(5_000))
        );
        assert_eq!(back, fields);
        assert!(
            decode(br#"{"sessionId":"s1","notice":"from:the-future"}"#)
                .unwrap()
                .is_none()
        );
        assert!(decode(b"not json").is_err());
    }
}
