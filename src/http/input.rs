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
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::actions::{client_key, queue_input};
use super::{ApiJson, ApiQuery, json, session_id};
use crate::domain::model::SessionId;
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::openapi::answers::{self, ErrorBody};
use axum::http::HeaderMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) const MAX_TIMEOUT_MS: u64 = 60_000;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(queue, pop))
}

/// Input for the waiting agent (at most 64 KiB with `prompt`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct QueueInput {
    /// Any JSON but `null` (usually the text to type).
    #[schema(value_type = crate::http::openapi::AnyButNull, required = true)]
    input: Option<Value>,
    prompt: Option<Value>,
    /// The client's idempotency key (or the `Idempotency-Key` header).
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,200}$")]
    id: Option<String>,
}

/// 201 when queued; 200 with `duplicate: true` when its key was queued before (a retry:
/// nothing is queued again).
#[utoipa::path(
    post, path = "/api/sessions/{id}/input", operation_id = "queueInput", tag = "input",
    params(("id" = SessionId, Path, description = "The session's id")),
    request_body = QueueInput,
    responses(
        (status = 201, description = "Queued (and broadcast as `input:queued`)", body = answers::InputQueued),
        (status = 200, description = "Already queued under this id: nothing queued again", body = answers::InputQueued),
        (status = 404, description = "No such session (`sessionId`)", body = ErrorBody),
        (status = 429, description = "100 items are queued for the session", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
    ),
)]
async fn queue(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<QueueInput>,
) -> ApiResult<Response> {
    let sid = session_id(&id)?;
    let key = client_key(&headers, body.id)?;
    let input = match body.input {
        None | Some(Value::Null) => return Err(ApiError::field("input", "is required")),
        Some(v) => v,
    };
    let (input_id, pushed) = queue_input(&state, &sid, input, body.prompt, key).await?;
    let mut answer = json!({
        "success": true,
        "sessionId": sid,
        "inputQueued": true,
        "inputId": input_id,
        "queueLength": pushed.queue_length,
    });
    if pushed.duplicate {
        answer["duplicate"] = json!(true);
        return Ok(json(StatusCode::OK, &answer));
    }
    Ok(json(StatusCode::CREATED, &answer))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PopQuery {
    /// Wait up to this many milliseconds for an item (a long poll); without it, answer at
    /// once.
    #[param(maximum = 60000)]
    timeout: Option<u64>,
}

#[utoipa::path(
    get, path = "/api/sessions/{id}/input", operation_id = "pollInput", tag = "input",
    params(("id" = SessionId, Path, description = "The session's id"), PopQuery),
    responses((status = 200, description = "Exactly one item, first in first out, or none", body = answers::InputPolled)),
)]
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
    let mut stopping = state.shared().shutdown.subscribe();
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
        if *stopping.borrow_and_update() {
            // The instance is draining: answer now, the hook polls again (elsewhere).
            return Ok(json(
                StatusCode::OK,
                &json!({ "available": false, "sessionId": sid, "shuttingDown": true }),
            ));
        }
        tokio::select! {
            biased;
            _ = &mut notified => {}
            _ = stopping.changed() => {}
            _ = tokio::time::sleep_until(deadline) => last_look = true,
        }
    }
}
