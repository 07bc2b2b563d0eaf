//! Input for waiting agents: queue (dashboard) and pop one item (the input-inject hook).
//!
//! `GET` with `timeout` is a long poll that wakes as soon as input is queued. It pops only
//! when it is about to answer, and a poll whose client has gone away is dropped by the
//! server before it pops, so no item is consumed for nobody. Wake-ups from other instances
//! travel over Pub/Sub, which can lose them; so the poll looks at the queue once more
//! before it answers "timed out" (never a false empty answer, and 503 if storage is down),
//! and the bridge wakes every poll after it re-subscribes.

use std::time::Duration;

use super::Path;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiJson, ApiQuery, json, session_id};
use crate::domain::model::{InputItem, Notice, SessionId};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};

pub const MAX_TIMEOUT_MS: u64 = 60_000;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/sessions/{id}/input", post(queue).get(pop))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueInput {
    input: Option<Value>,
    prompt: Option<Value>,
}

async fn queue(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<QueueInput>,
) -> ApiResult<Response> {
    let sid = session_id(&id)?;
    let input = match body.input {
        None | Some(Value::Null) => return Err(ApiError::field("input", "is required")),
        Some(v) => v,
    };
    queue_input(&state, &sid, input, body.prompt).await?;
    Ok(json(
        StatusCode::CREATED,
        &json!({ "success": true, "sessionId": sid, "inputQueued": true }),
    ))
}

/// Largest input item (`input` plus `prompt`, as JSON).
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

/// Shared by `POST .../input` and the WebSocket `input` message.
pub async fn queue_input(
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
    let item_id = item.id.clone();
    let store = state.store();
    let queued = store.push_input(sid, item).await?;
    let mut notice = Map::new();
    notice.insert("inputId".into(), Value::from(item_id));
    notice.insert("queueLength".into(), Value::from(queued));
    store
        .publish_notice(sid, Notice::InputQueued, notice)
        .await?;
    Ok(queued)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PopQuery {
    timeout: Option<u64>,
}

async fn pop(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PopQuery>,
) -> ApiResult<Response> {
    let sid = session_id(&id)?;
    if q.timeout.is_some_and(|t| t > MAX_TIMEOUT_MS) {
        return Err(ApiError::field(
            "query.timeout",
            format!("must be at most {MAX_TIMEOUT_MS} milliseconds"),
        ));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(q.timeout.unwrap_or(0));
    let bus = &state.shared().bus;
    let mut last_look = false;
    loop {
        // Register for the wake-up before looking, so an arrival in between is not missed.
        let notified = bus.input_waker(&sid).notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(item) = state.store().pop_input(&sid).await? {
            return Ok(json(
                StatusCode::OK,
                &json!({ "available": true, "input": item, "sessionId": sid }),
            ));
        }
        if q.timeout.is_none() {
            return Ok(json(
                StatusCode::OK,
                &json!({ "available": false, "sessionId": sid }),
            ));
        }
        if last_look {
            return Ok(json(
                StatusCode::OK,
                &json!({ "available": false, "sessionId": sid, "timedOut": true }),
            ));
        }
        tokio::select! {
            biased;
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => last_look = true,
        }
    }
}
