//! Sessions: create, list, get (with chains), update, delete; chains; awaiting.

use super::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{
    ApiJson, ApiQuery, OptionalJson, json, json_array, raw_json, serialize_within, session_id,
};
use crate::domain::model::{Chain, LastPrompt, Session, SessionId, SessionStatus, Timestamp};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::openapi::answers::{self, ErrorBody};
use crate::storage::{Cursor, SessionFilter, SessionPage, SessionUpdate};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) const DEFAULT_LIST_LIMIT: usize = 200;
pub(super) const MAX_LIST_LIMIT: usize = 1000;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(chains))
        .routes(routes!(awaiting))
        .routes(routes!(chain))
}

/// A new session (the hooks create theirs with their first event instead).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateSession {
    /// An absolute path (POSIX or Windows) outside the system directories.
    #[schema(min_length = 1, max_length = 500, pattern = "^(/|[A-Za-z]:[/\\\\])")]
    cwd: String,
    #[schema(max_length = 255)]
    hostname: Option<String>,
    #[schema(max_length = 64)]
    platform: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,200}$")]
    user_id: Option<String>,
    /// The session's id; drawn by the server when absent.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,200}$")]
    id: Option<String>,
}

/// Lexically normalises a path (`.` and `..`, separators, case for Windows paths) so the
/// denied-path check cannot be walked around with `/home/../etc`.
fn normalize(path: &str) -> Option<String> {
    let b = path.as_bytes();
    // `C:\...`: a drive letter, a colon; `/:x` is a POSIX path.
    let windows = b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':';
    let unified = path.replace('\\', "/");
    let (root, rest) = if windows {
        (unified[..2].to_ascii_lowercase(), &unified[2..])
    } else {
        (String::new(), unified.as_str())
    };
    if !rest.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in rest.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let joined = format!("{root}/{}", parts.join("/"));
    Some(if windows {
        joined.to_ascii_lowercase()
    } else {
        joined
    })
}

const DENIED_PATHS: &[&str] = &[
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/root",
    "/boot",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/var/run",
    "/run",
    "c:/windows",
    "c:/program files",
    "c:/program files (x86)",
    "c:/programdata",
];

/// `cwd` must be an absolute path (POSIX or Windows) outside the system directories.
/// It is not checked against this server's filesystem: the agent may run elsewhere.
fn check_cwd(cwd: &str) -> ApiResult<()> {
    if cwd.is_empty() || cwd.len() > 500 {
        return Err(ApiError::field("cwd", "must be 1 to 500 characters"));
    }
    let Some(norm) = normalize(cwd) else {
        return Err(ApiError::field("cwd", "must be an absolute path"));
    };
    let denied = norm == "/"
        || DENIED_PATHS
            .iter()
            .any(|d| norm == *d || norm.starts_with(&format!("{d}/")));
    if denied {
        return Err(ApiError::Forbidden(format!(
            "Access to system directory {cwd} is denied"
        )));
    }
    Ok(())
}

fn optional_text(field: &str, value: Option<String>, max: usize) -> ApiResult<Option<String>> {
    match value {
        Some(v) if v.len() > max => Err(ApiError::field(
            field,
            format!("must be at most {max} characters"),
        )),
        v => Ok(v),
    }
}

#[utoipa::path(
    post, path = "/api/sessions", operation_id = "createSession", tag = "sessions",
    request_body = CreateSession,
    responses(
        (status = 201, description = "Created (`status: pending`)", body = Session),
        (status = 403, description = "`cwd` is a system directory, or the Host or Origin is not allowed", body = ErrorBody),
        (status = 409, description = "The id is taken", body = ErrorBody),
    ),
)]
async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateSession>,
) -> ApiResult<Response> {
    check_cwd(&body.cwd)?;
    let now = state.now();
    let id = match body.id {
        Some(id) => SessionId::parse(&id).map_err(|e| ApiError::field("id", e.to_string()))?,
        None => SessionId::parse(&state.shared().ids.id("session", now.0))
            .map_err(|e| ApiError::Internal(format!("generated id: {e}")))?,
    };
    let mut session = Session::new(id, SessionStatus::Pending, now, now);
    session.cwd = body.cwd;
    session.hostname = optional_text("hostname", body.hostname, 255)?;
    session.platform = optional_text("platform", body.platform, 64)?;
    session.user = match body.user_id {
        Some(u) if crate::domain::model::is_valid_id(&u) => Some(u),
        Some(_) => {
            return Err(ApiError::field(
                "userId",
                "must be 1 to 200 characters of A-Z, a-z, 0-9, '_', '.', ':' or '-'",
            ));
        }
        None => None,
    };
    let session = state.store().create_session(session).await?;
    Ok(json(StatusCode::CREATED, &session))
}

/// Largest `metadata` a session may carry (as JSON).
pub(super) const MAX_METADATA_BYTES: usize = 64 * 1024;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only sessions with this status.
    #[param(value_type = Option<SessionStatus>)]
    status: Option<String>,
    /// Only this user's sessions.
    user: Option<String>,
    /// Sessions per page (default 200).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `nextCursor` of the previous page.
    #[param(pattern = "^[0-9]{1,19}:[A-Za-z0-9_.:-]{1,200}$")]
    cursor: Option<String>,
}

pub(super) fn parse_status(field: &str, s: &str) -> ApiResult<SessionStatus> {
    SessionStatus::parse(s).ok_or_else(|| {
        ApiError::field(
            field,
            "must be one of pending, in_progress, completed, failed, skipped",
        )
    })
}

#[utoipa::path(
    get, path = "/api/sessions", operation_id = "listSessions", tag = "sessions",
    params(ListQuery),
    responses((status = 200, description = "A page of sessions, newest activity first", body = answers::SessionPage)),
)]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(ApiError::field(
            "query.limit",
            format!("must be between 1 and {MAX_LIST_LIMIT}"),
        ));
    }
    let filter = SessionFilter {
        status: q
            .status
            .as_deref()
            .map(|s| parse_status("query.status", s))
            .transpose()?,
        user: q.user,
        limit,
        cursor: parse_cursor(q.cursor.as_deref())?,
    };
    let page = state.store().list_sessions(filter).await?;
    page_response(&page, state.config().max_response_bytes, |n| {
        format!(r#""count":{n}"#)
    })
}

/// A `cursor` query parameter, as issued in `nextCursor`.
pub(super) fn parse_cursor(raw: Option<&str>) -> ApiResult<Option<Cursor>> {
    raw.map(|c| {
        Cursor::decode(c)
            .ok_or_else(|| ApiError::field("query.cursor", "is not a cursor this server issued"))
    })
    .transpose()
}

/// `{<lead>,"sessions":[...],"nextCursor"?}` for a page of sessions, bounded in bytes as well
/// as items: a page that stops early continues at its cursor. `lead` gets the number of
/// sessions sent.
pub(super) fn page_response(
    page: &SessionPage,
    max_bytes: usize,
    lead: impl FnOnce(usize) -> String,
) -> ApiResult<Response> {
    let (texts, all) = serialize_within(&page.sessions, max_bytes)?;
    let next_cursor = if all {
        page.next_cursor.clone()
    } else {
        page.sessions.get(texts.len() - 1).map(|s| Cursor {
            last_activity: s.last_activity_at,
            id: s.id.clone(),
        })
    };
    let mut body = format!(
        r#"{{{},"sessions":{}"#,
        lead(texts.len()),
        json_array(&texts)
    );
    if let Some(c) = next_cursor {
        body.push_str(&format!(r#","nextCursor":{}"#, json!(c.encode())));
    }
    body.push('}');
    Ok(raw_json(StatusCode::OK, body))
}

#[derive(Serialize)]
struct SessionWithChains<'a> {
    #[serde(flatten)]
    session: &'a Session,
    chains: &'a [Chain],
}

#[utoipa::path(
    get, path = "/api/sessions/{id}", operation_id = "getSession", tag = "sessions",
    params(("id" = SessionId, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session with its chains; from the archive (`archived: true`) once it has left live storage", body = answers::SessionWithChains),
        (status = 404, description = "No such session (`sessionId`)", body = ErrorBody),
    ),
)]
async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = session_id(&id)?;
    let Some((session, chains)) = state.store().session_with_chains(&id).await? else {
        return archived(&state, &id).await;
    };
    Ok(json(
        StatusCode::OK,
        &SessionWithChains {
            session: &session,
            chains: &chains,
        },
    ))
}

/// A session gone from live storage (expired, or deleted after it was archived), as the
/// archive holds it, marked `archived: true`; 404 when the archive has none either.
async fn archived(state: &AppState, id: &SessionId) -> ApiResult<Response> {
    #[derive(Deserialize)]
    struct Snapshot {
        session: serde_json::Map<String, Value>,
        #[serde(default)]
        chains: Vec<Value>,
    }
    let not_found = || ApiError::session_not_found(id.as_str());
    let archive = state.archiver().ok_or_else(not_found)?.archive();
    let body = archive.get(id, None).await?.ok_or_else(not_found)?;
    let snapshot: Snapshot = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Internal(format!("archived snapshot of {id}: {e}")))?;
    let mut out = snapshot.session;
    out.insert("chains".into(), Value::Array(snapshot.chains));
    out.insert("archived".into(), Value::Bool(true));
    Ok(json(StatusCode::OK, &out))
}

/// A change to a session: `completed` or `failed` also sets `endedAt` and `duration`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateSession {
    #[schema(value_type = Option<SessionStatus>)]
    status: Option<String>,
    #[schema(max_length = 10000)]
    summary: Option<String>,
    #[schema(max_length = 1000)]
    end_reason: Option<String>,
    /// A JSON object of at most 64 KiB.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

#[utoipa::path(
    put, path = "/api/sessions/{id}", operation_id = "updateSession", tag = "sessions",
    params(("id" = SessionId, Path, description = "The session's id")),
    request_body = UpdateSession,
    responses(
        (status = 200, description = "The session as updated", body = Session),
        (status = 404, description = "No such session (`sessionId`)", body = ErrorBody),
    ),
)]
async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateSession>,
) -> ApiResult<Response> {
    let id = session_id(&id)?;
    if body.metadata.as_ref().is_some_and(|m| !m.is_object()) {
        return Err(ApiError::field("metadata", "must be a JSON object"));
    }
    let metadata_size = body
        .metadata
        .as_ref()
        .and_then(|m| serde_json::to_string(m).ok())
        .map_or(0, |t| t.len());
    if metadata_size > MAX_METADATA_BYTES {
        return Err(ApiError::field(
            "metadata",
            format!("must be at most {MAX_METADATA_BYTES} bytes as JSON"),
        ));
    }
    let update = SessionUpdate {
        status: body
            .status
            .as_deref()
            .map(|s| parse_status("status", s))
            .transpose()?,
        summary: optional_text("summary", body.summary, 10_000)?,
        end_reason: optional_text("endReason", body.end_reason, 1_000)?,
        metadata: body.metadata,
    };
    // The store announces `session:updated` inside the same atomic write.
    let session = state
        .store()
        .update_session(&id, update)
        .await?
        .ok_or_else(|| ApiError::session_not_found(id.as_str()))?;
    if session.is_finished() {
        state.request_archive(&id).await;
    }
    Ok(json(StatusCode::OK, &session))
}

#[utoipa::path(
    delete, path = "/api/sessions/{id}", operation_id = "deleteSession", tag = "sessions",
    params(("id" = SessionId, Path, description = "The session's id")),
    responses(
        (status = 204, description = "Deleted, with its events, chains and queues"),
        (status = 404, description = "No such session (`sessionId`)", body = ErrorBody),
    ),
)]
async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = session_id(&id)?;
    // `session:deleted` goes out inside the delete itself: subscribers' cursors start over
    // (a recreated session counts from seq 1 again).
    if state.store().delete_session(&id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::session_not_found(id.as_str()))
    }
}

#[utoipa::path(
    get, path = "/api/sessions/{id}/chains", operation_id = "listChains", tag = "sessions",
    params(("id" = SessionId, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session's chains", body = answers::ChainList),
        (status = 404, description = "No such session (`sessionId`)", body = ErrorBody),
    ),
)]
async fn chains(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = session_id(&id)?;
    let (_, chains) = state
        .store()
        .session_with_chains(&id)
        .await?
        .ok_or_else(|| ApiError::session_not_found(id.as_str()))?;
    Ok(json(
        StatusCode::OK,
        &json!({ "sessionId": id, "count": chains.len(), "chains": chains }),
    ))
}

#[utoipa::path(
    get, path = "/api/chains/{chain_id}", operation_id = "getChain", tag = "sessions",
    params(("chain_id" = String, Path, description = "The chain's id")),
    responses(
        (status = 200, description = "The chain", body = Chain),
        (status = 404, description = "No such chain (`chainId`)", body = ErrorBody),
    ),
)]
async fn chain(State(state): State<AppState>, Path(chain_id): Path<String>) -> ApiResult<Response> {
    match state.store().chain(&chain_id).await? {
        Some(chain) => Ok(json(StatusCode::OK, &chain)),
        None => {
            let mut extra = Map::new();
            extra.insert("chainId".into(), Value::from(chain_id));
            Err(ApiError::NotFound {
                message: "Chain not found".into(),
                extra,
            })
        }
    }
}

/// What the agent is waiting for (all optional; the body may be absent).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Awaiting {
    prompt_type: Option<String>,
    prompt_text: Option<String>,
    quick_responses: Option<Vec<Value>>,
}

#[utoipa::path(
    post, path = "/api/sessions/{id}/awaiting", operation_id = "setAwaiting", tag = "sessions",
    params(("id" = SessionId, Path, description = "The session's id")),
    request_body(content = Option<Awaiting>, description = "Optional"),
    responses(
        (status = 200, description = "Set and broadcast", body = answers::AwaitingSet),
        (status = 404, description = "No such session (`sessionId`)", body = ErrorBody),
    ),
)]
async fn awaiting(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<Awaiting>,
) -> ApiResult<Response> {
    let id = session_id(&id)?;
    let now: Timestamp = state.now();
    let prompt = LastPrompt {
        text: body.prompt_text.clone().unwrap_or_default(),
        kind: body
            .prompt_type
            .clone()
            .unwrap_or_else(|| "text".to_owned()),
        quick_responses: body.quick_responses.clone(),
        timestamp: now,
    };
    let mut fields = Map::new();
    fields.insert("promptType".into(), json!(body.prompt_type));
    fields.insert("promptText".into(), json!(body.prompt_text));
    fields.insert("quickResponses".into(), json!(body.quick_responses));
    state.store().set_awaiting(&id, prompt, fields).await?;
    Ok(json(
        StatusCode::OK,
        &json!({
            "status": "awaiting",
            "sessionId": id,
            "conversationState": "awaiting_input",
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cwd_rules() {
        assert!(check_cwd("/home/alice/src").is_ok());
        assert!(check_cwd("C:\\Users\\alice\\src").is_ok());
        assert!(check_cwd("/etcetera/x").is_ok());
        assert!(matches!(
            check_cwd("relative/path"),
            Err(ApiError::BadRequest { .. })
        ));
        assert!(matches!(check_cwd("/etc"), Err(ApiError::Forbidden(_))));
        assert!(matches!(
            check_cwd("/home/../etc/passwd"),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            check_cwd("c:\\WINDOWS\\system32"),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(check_cwd("/"), Err(ApiError::Forbidden(_))));
        assert!(check_cwd(&format!("/{}", "a".repeat(500))).is_err());
    }
}
