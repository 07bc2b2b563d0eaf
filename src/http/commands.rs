//! Commands: queue (dashboard), claim (hooks and the MCP server), acknowledge, inspect.
//!
//! Both path families are served: `/api/sessions/:id/commands` (what every real client
//! uses) and `/api/commands/:id/commands`.

use super::Path;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::actions::client_key;
use super::{ApiJson, ApiQuery, OptionalJson, json, session_id};
use crate::domain::model::{Command, CommandStatus, CommandType};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use axum::http::HeaderMap;

/// Longest lease a poller may ask for (it is also bounded by the queue TTL).
pub(super) const MAX_LEASE_MS: u64 = 10 * 60 * 1000;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions/{id}/commands", post(queue).get(claim))
        .route("/api/commands/{id}/commands", post(queue).get(claim))
        .route("/api/commands/{id}/ack", post(ack))
        .route("/api/commands/{id}", get(get_one))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueCommand {
    #[serde(rename = "type")]
    kind: CommandType,
    #[serde(default)]
    payload: Option<Value>,
    /// The client's idempotency key (or the `Idempotency-Key` header): the command's id.
    id: Option<String>,
}

fn validate_payload(kind: CommandType, payload: &Map<String, Value>) -> ApiResult<()> {
    match kind {
        CommandType::Retry | CommandType::Skip => {
            let ok = payload
                .get("stepNumber")
                .is_some_and(crate::domain::model::is_step_number);
            if !ok {
                return Err(ApiError::field(
                    "payload.stepNumber",
                    "is required for retry and skip: a whole number from 1 to 10000",
                ));
            }
        }
        CommandType::Abort => {
            let ok = payload
                .get("reason")
                .and_then(Value::as_str)
                .is_some_and(|r| !r.trim().is_empty());
            if !ok {
                return Err(ApiError::field(
                    "payload.reason",
                    "is required for abort (a non-empty string)",
                ));
            }
        }
        CommandType::Pause | CommandType::Resume | CommandType::Cancel => {}
    }
    Ok(())
}

/// 201 when queued; 200 with `duplicate: true` and the stored command (as it is now) when
/// the session already holds its id (a retry: nothing is queued again).
async fn queue(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<QueueCommand>,
) -> ApiResult<Response> {
    let sid = session_id(&id)?;
    let key = client_key(&headers, body.id)?;
    let payload = match body.payload {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(ApiError::field("payload", "must be a JSON object")),
    };
    validate_payload(body.kind, &payload)?;
    let now = state.now();
    let command = Command {
        id: key.unwrap_or_else(|| state.shared().ids.id("cmd", now.0)),
        session_id: sid.clone(),
        kind: body.kind,
        payload,
        status: CommandStatus::Pending,
        issued_at: now,
        delivered_at: None,
        acked_at: None,
        result: None,
        error: None,
        lease_until: None,
    };
    // The store announces `command:queued` inside the same atomic write.
    let (command, duplicate) = state.store().push_command(command).await?;
    let mut answer = json!({
        "success": true,
        "sessionId": sid,
        "commandId": command.id,
        "command": command,
    });
    if duplicate {
        answer["duplicate"] = json!(true);
        return Ok(json(StatusCode::OK, &answer));
    }
    Ok(json(StatusCode::CREATED, &answer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimQuery {
    lease: Option<u64>,
}

async fn claim(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ClaimQuery>,
) -> ApiResult<Response> {
    let sid = session_id(&id)?;
    if let Some(lease) = q.lease
        && !(1..=MAX_LEASE_MS).contains(&lease)
    {
        return Err(ApiError::field(
            "query.lease",
            format!("must be between 1 and {MAX_LEASE_MS} milliseconds"),
        ));
    }
    let commands = state.store().claim_commands(&sid, q.lease).await?;
    state.observe_queue("commands", commands.len());
    Ok(json(
        StatusCode::OK,
        &json!({ "sessionId": sid, "count": commands.len(), "commands": commands }),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ack {
    result: Option<Value>,
    error: Option<Value>,
}

fn command_not_found(id: &str) -> ApiError {
    let mut extra = Map::new();
    extra.insert("commandId".into(), Value::from(id));
    ApiError::NotFound {
        message: "Command not found".into(),
        extra,
    }
}

async fn ack(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<Ack>,
) -> ApiResult<Response> {
    let command = state
        .store()
        .ack_command(&id, body.result, body.error)
        .await?
        .ok_or_else(|| command_not_found(&id))?;
    Ok(json(
        StatusCode::OK,
        &json!({
            "success": true,
            "commandId": command.id,
            "acknowledged": true,
            "status": command.status,
        }),
    ))
}

async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let command = state
        .store()
        .get_command(&id)
        .await?
        .ok_or_else(|| command_not_found(&id))?;
    Ok(json(StatusCode::OK, &command))
}
