//! Operations that both a REST route and a WebSocket message perform, written once so the
//! two cannot drift: queueing input for a waiting agent (`POST .../input` and the
//! WebSocket `input` message), and reading a write's idempotency key (input and commands).
//!
//! Each takes values already parsed and answers with a result, never a response or a
//! frame: nothing here may read a request or write to a socket.

use axum::http::HeaderMap;
use serde_json::Value;

use crate::domain::model::{InputItem, SessionId, is_valid_id};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::storage::Pushed;

/// The client's idempotency key for a queued write: the `Idempotency-Key` header or the
/// body's `id` (the same if both are sent), 1 to 200 characters of `[A-Za-z0-9_.:-]`.
pub(super) fn client_key(
    headers: &HeaderMap,
    body_id: Option<String>,
) -> ApiResult<Option<String>> {
    let header = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::field("Idempotency-Key", KEY_RULE))?
                .to_owned(),
        ),
    };
    let key = match (header, body_id) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::field(
                "id",
                "must equal the Idempotency-Key header when both are sent",
            ));
        }
        (h, b) => h.or(b),
    };
    match key {
        Some(k) if !is_valid_id(&k) => Err(ApiError::field("id", KEY_RULE)),
        k => Ok(k),
    }
}

const KEY_RULE: &str = "must be 1 to 200 characters of A-Z, a-z, 0-9, _ . : -";

/// Largest input item (`input` plus `prompt`, as JSON).
pub(super) const MAX_INPUT_BYTES: usize = 64 * 1024;

/// Shared by `POST .../input` and the WebSocket `input` message. With a client `key` the
/// item's id is the key, and a retry of it queues nothing again. Returns the item's id and
/// what became of it.
pub(super) async fn queue_input(
    state: &AppState,
    sid: &SessionId,
    input: Value,
    prompt: Option<Value>,
    key: Option<String>,
) -> ApiResult<(String, Pushed)> {
    // 100 queued items of at most this size: a session's queue stays small.
    let size = serde_json::to_string(&input).map_or(0, |t| t.len())
        + prompt
            .as_ref()
            .and_then(|p| serde_json::to_string(p).ok())
            .map_or(0, |t| t.len());
    if size > MAX_INPUT_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_INPUT_BYTES,
        });
    }
    let now = state.now();
    let keyed = key.is_some();
    let item = InputItem {
        id: key.unwrap_or_else(|| state.shared().ids.id("input", now.0)),
        input,
        prompt,
        timestamp: now,
    };
    // The store announces `input:queued` (the long polls' wake-up on every instance)
    // inside the same atomic write.
    let id = item.id.clone();
    let pushed = state.store().push_input(sid, item, keyed).await?;
    state.observe_queue("input", pushed.queue_length);
    Ok((id, pushed))
}
