//! How afw's values are written to and read from Redis: stored events (their head parsed
//! without touching the body), JSON values, command records spread over a hash, and the
//! RESP values scripts return.
//!
//! Decoding never guesses: stored data afw did not write is [`StoreError::Corrupt`].
//! Nothing here may talk to Redis.

use std::collections::BTreeMap;

use redis::Value as RValue;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::domain::model::{
    Command, CommandStatus, CommandType, EventType, SessionId, StoredEvent, Timestamp,
};
use crate::storage::StoreError;

#[derive(Deserialize)]
struct EventHead {
    seq: u64,
    #[serde(rename = "type")]
    kind: String,
    timestamp: Value,
}

pub(super) fn stored_event(json: Vec<u8>) -> Result<StoredEvent, StoreError> {
    let head: EventHead = serde_json::from_slice(&json)
        .map_err(|e| StoreError::Corrupt(format!("stored event: {e}")))?;
    let kind = EventType::parse(&head.kind)
        .ok_or_else(|| StoreError::Corrupt(format!("stored event type {}", head.kind)))?;
    // Stored events passed ingestion, so their timestamps read by the same rule.
    let timestamp = crate::domain::ingest::timestamp_of(&head.timestamp)
        .map_err(|why| StoreError::Corrupt(format!("stored event timestamp {why}")))?;
    Ok(StoredEvent {
        seq: head.seq,
        kind,
        timestamp,
        json: json.into(),
    })
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(
    what: &str,
    raw: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt(format!("stored {what}: {e}")))
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

pub(super) fn bulk(v: &RValue) -> Option<Vec<u8>> {
    match v {
        RValue::BulkString(b) => Some(b.clone()),
        RValue::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

pub(super) fn int(v: &RValue) -> Option<i64> {
    match v {
        RValue::Int(i) => Some(*i),
        RValue::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// The immutable part of a command record (`json` field of its hash).
#[derive(serde::Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CommandRecord {
    pub(super) id: String,
    pub(super) session_id: SessionId,
    #[serde(rename = "type")]
    pub(super) kind: CommandType,
    pub(super) payload: Map<String, Value>,
    pub(super) issued_at: Timestamp,
}

pub(super) fn command_from_hash(fields: &BTreeMap<String, Vec<u8>>) -> Result<Command, StoreError> {
    let record: CommandRecord = parse_json(
        "command",
        fields
            .get("json")
            .ok_or_else(|| StoreError::Corrupt("command without json".into()))?,
    )?;
    let text = |k: &str| fields.get(k).and_then(|v| std::str::from_utf8(v).ok());
    let ms = |k: &str| text(k).and_then(|v| v.parse::<u64>().ok()).map(Timestamp);
    let json_field = |k: &str| text(k).and_then(|v| serde_json::from_str::<Value>(v).ok());
    // An unknown or missing status is stored data afw did not write: an error, not `pending`.
    let status = text("status")
        .and_then(CommandStatus::parse)
        .ok_or_else(|| StoreError::Corrupt(format!("command status {:?}", text("status"))))?;
    Ok(Command {
        id: record.id,
        session_id: record.session_id,
        kind: record.kind,
        payload: record.payload,
        status,
        issued_at: record.issued_at,
        delivered_at: ms("deliveredAt"),
        acked_at: ms("ackedAt"),
        result: json_field("result"),
        error: json_field("error"),
        lease_until: ms("leaseUntil"),
    })
}
