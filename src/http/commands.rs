//! Commands: queue (dashboard), claim (hooks and the MCP server), acknowledge, inspect.
//!
//! Both path families are served: `/api/sessions/:id/commands` (what every real client
//! uses) and `/api/commands/:id/commands`.

use super::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::actions::client_key;
use super::{ApiJson, ApiQuery, OptionalJson, json, session_id};
use crate::domain::model::SessionId;
use crate::domain::model::{Command, CommandStatus, CommandType};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::openapi::answers::{self, ErrorBody};
use axum::http::HeaderMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Longest lease a poller may ask for (it is also bounded by the queue TTL).
pub(super) const MAX_LEASE_MS: u64 = 10 * 60 * 1000;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(queue, claim))
        .routes(routes!(queue_legacy, claim_legacy))
        .routes(routes!(ack))
        .routes(routes!(get_one))
}

/// A command for the agent: `retry` and `skip` need `payload.stepNumber` (1..=10000),
/// `abort` needs `payload.reason`.
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

impl utoipa::PartialSchema for QueueCommand {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::http::openapi::command_schema()
    }
}

impl utoipa::ToSchema for QueueCommand {}

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
/// the session already holds its id (a retry: nothing is queued again). The id is the body's
/// `id` or the `Idempotency-Key` header (the same if both are sent).
#[utoipa::path(
    post, path = "/api/sessions/{id}/commands", operation_id = "queueCommand", tag = "commands",
    params(("id" = SessionId, Path, description = "The session's id")),
    request_body = QueueCommand,
    responses(
        (status = 201, description = "Queued (and broadcast as `command:queued`)", body = answers::CommandQueued),
        (status = 200, description = "Already queued under this id: nothing queued again", body = answers::CommandQueued),
        (status = 404, description = "No such session (`sessionId`)", body = ErrorBody),
        (status = 409, description = "The command id is taken by another session", body = ErrorBody),
        (status = 429, description = "The session's command queue is full", body = ErrorBody),
    ),
)]
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

/// The same as `POST /api/sessions/{id}/commands` (the older path family).
#[utoipa::path(
    post, path = "/api/commands/{id}/commands", operation_id = "queueCommandLegacy", tag = "commands",
    params(("id" = SessionId, Path, description = "The session's id")),
    request_body = QueueCommand,
    responses(
        (status = 201, description = "Queued (and broadcast as `command:queued`)", body = answers::CommandQueued),
        (status = 200, description = "Already queued under this id: nothing queued again", body = answers::CommandQueued),
        (status = 404, description = "No such session (`sessionId`)", body = ErrorBody),
        (status = 409, description = "The command id is taken by another session", body = ErrorBody),
        (status = 429, description = "The session's command queue is full", body = ErrorBody),
    ),
)]
async fn queue_legacy(
    state: State<AppState>,
    id: Path<String>,
    headers: HeaderMap,
    body: ApiJson<QueueCommand>,
) -> ApiResult<Response> {
    queue(state, id, headers, body).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ClaimQuery {
    /// At-least-once mode: a claimed command not acknowledged within this many
    /// milliseconds becomes pending again.
    #[param(minimum = 1, maximum = 600000)]
    lease: Option<u64>,
}

/// The same as `GET /api/sessions/{id}/commands` (the older path family).
#[utoipa::path(
    get, path = "/api/commands/{id}/commands", operation_id = "claimCommandsLegacy", tag = "commands",
    params(("id" = SessionId, Path, description = "The session's id"), ClaimQuery),
    responses((status = 200, description = "The commands this poll claimed (each goes to exactly one poll)", body = answers::CommandsClaimed)),
)]
async fn claim_legacy(
    state: State<AppState>,
    id: Path<String>,
    q: ApiQuery<ClaimQuery>,
) -> ApiResult<Response> {
    claim(state, id, q).await
}

#[utoipa::path(
    get, path = "/api/sessions/{id}/commands", operation_id = "claimCommands", tag = "commands",
    params(("id" = SessionId, Path, description = "The session's id"), ClaimQuery),
    responses((status = 200, description = "The commands this poll claimed (each goes to exactly one poll)", body = answers::CommandsClaimed)),
)]
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

/// The outcome of a command (the body may be absent).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Ack {
    result: Option<Value>,
    /// Present when the command failed.
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

#[utoipa::path(
    post, path = "/api/commands/{id}/ack", operation_id = "ackCommand", tag = "commands",
    params(("id" = String, Path, description = "The command's id")),
    request_body(content = Option<Ack>, description = "Optional"),
    responses(
        (status = 200, description = "Recorded", body = answers::CommandAcked),
        (status = 404, description = "No such command (`commandId`)", body = ErrorBody),
    ),
)]
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

#[utoipa::path(
    get, path = "/api/commands/{id}", operation_id = "getCommand", tag = "commands",
    params(("id" = String, Path, description = "The command's id")),
    responses(
        (status = 200, description = "The command and its status", body = crate::domain::model::CommandWire),
        (status = 404, description = "No such command (`commandId`)", body = ErrorBody),
    ),
)]
async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let command = state
        .store()
        .get_command(&id)
        .await?
        .ok_or_else(|| command_not_found(&id))?;
    Ok(json(StatusCode::OK, &command))
}
