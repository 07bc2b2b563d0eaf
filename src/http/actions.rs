//! Operations that both a REST route and a WebSocket message perform, written once so the
//! two cannot drift: today, queueing input for a waiting agent (`POST .../input` and the
//! WebSocket `input` message).
//!
//! Each takes values already parsed and answers with a result, never a response or a
//! frame: nothing here may read a request or write to a socket.

use serde_json::Value;

use crate::domain::model::{InputItem, SessionId};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};

/// Largest input item (`input` plus `prompt`, as JSON).
pub(super) const MAX_INPUT_BYTES: usize = 64 * 1024;

/// Shared by `POST .../input` and the WebSocket `input` message.
pub(super) async fn queue_input(
    state: &AppState,
    sid: &SessionId,
    input: Value,
    prompt: Option<Value>,
) -> ApiResult<usize> {
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
    let item = InputItem {
        id: state.shared().ids.id("input", now.0),
        input,
        prompt,
        timestamp: now,
    };
    // The store announces `input:queued` (the long polls' wake-up on every instance)
    // inside the same atomic write.
    Ok(state.store().push_input(sid, item).await?)
}
