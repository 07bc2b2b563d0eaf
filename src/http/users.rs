//! Users: who has sessions, derived from the sessions' `user` field.

use super::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiQuery, json_array, raw_json, serialize_within};
use crate::domain::model::{Session, SessionStatus};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::openapi::answers;
use crate::storage::{SessionFilter, UserCursor};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// A user is online when one of their sessions is running and was active this recently.
pub(super) const ONLINE_WINDOW_MS: u64 = 5 * 60 * 1000;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(sessions_of))
}

/// A user entry lists at most this many of their sessions (newest activity first);
/// `sessionCount` counts them all.
pub(super) const MAX_SESSIONS_PER_USER: usize = 100;
const DEFAULT_USERS_LIMIT: usize = 100;
const MAX_USERS_LIMIT: usize = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Users per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `nextCursor` of the previous page.
    #[param(pattern = "^[0-9]{1,19}:.+$")]
    cursor: Option<String>,
}

pub(super) fn checked_limit(limit: Option<usize>, default: usize, max: usize) -> ApiResult<usize> {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::field(
            "query.limit",
            format!("must be between 1 and {max}"),
        ));
    }
    Ok(limit)
}

/// One page of users read from the users index (newest activity first), each with their
/// newest sessions: the cost follows the page, not the number of sessions.
#[utoipa::path(
    get, path = "/api/users", operation_id = "listUsers", tag = "users",
    params(ListQuery),
    responses((status = 200, description = "A page of users, newest activity first", body = answers::UserPage)),
)]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    let limit = checked_limit(q.limit, DEFAULT_USERS_LIMIT, MAX_USERS_LIMIT)?;
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| {
            UserCursor::decode(c).ok_or_else(|| {
                ApiError::field("query.cursor", "is not a cursor this server issued")
            })
        })
        .transpose()?;
    let now = state.now().0;
    let page = state
        .store()
        .list_users(limit, cursor, MAX_SESSIONS_PER_USER)
        .await?;
    let users: Vec<Value> = page
        .users
        .iter()
        .map(|u| user_entry(&u.user, u.session_count, &u.sessions, now))
        .collect();
    let (texts, all) = serialize_within(&users, state.config().max_response_bytes)?;
    let mut body = format!(
        r#"{{"count":{},"users":{}"#,
        texts.len(),
        json_array(&texts)
    );
    let next = if all {
        page.next_cursor
    } else {
        // Cut short by the byte bound: go on after the last user sent.
        page.users.get(texts.len() - 1).map(|u| UserCursor {
            last_activity: u.sessions[0].last_activity_at,
            user: u.user.clone(),
        })
    };
    if let Some(next) = next {
        body.push_str(&format!(r#","nextCursor":{}"#, json!(next.encode())));
    }
    body.push('}');
    Ok(raw_json(StatusCode::OK, body))
}

fn user_entry(user: &str, count: usize, sessions: &[Session], now: u64) -> Value {
    let online = sessions.iter().any(|s| {
        matches!(s.status, SessionStatus::InProgress | SessionStatus::Pending)
            && now.saturating_sub(s.last_activity_at.0) <= ONLINE_WINDOW_MS
    });
    json!({
        "id": user,
        "user": user,
        "sessionCount": count,
        "isOnline": online,
        "sessions": sessions.iter().map(|s| json!({
            "id": s.id,
            "status": s.status,
            "startedAt": s.started_at,
            "endedAt": s.ended_at,
        })).collect::<Vec<_>>(),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SessionsQuery {
    /// Sessions per page (default 200).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `nextCursor` of the previous page.
    #[param(pattern = "^[0-9]{1,19}:[A-Za-z0-9_.:-]{1,200}$")]
    cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/api/users/{user_id}/sessions", operation_id = "userSessions", tag = "users",
    params(("user_id" = String, Path, description = "The user"), SessionsQuery),
    responses((status = 200, description = "A page of the user's sessions, newest activity first", body = answers::UserSessions)),
)]
async fn sessions_of(
    State(state): State<AppState>,
    Path(user): Path<String>,
    ApiQuery(q): ApiQuery<SessionsQuery>,
) -> ApiResult<Response> {
    let limit = checked_limit(q.limit, 200, 1000)?;
    let page = state
        .store()
        .list_sessions(SessionFilter {
            user: Some(user.clone()),
            limit,
            cursor: super::sessions::parse_cursor(q.cursor.as_deref())?,
            ..SessionFilter::default()
        })
        .await?;
    super::sessions::page_response(&page, state.config().max_response_bytes, |n| {
        format!(r#""user":{},"sessionCount":{n}"#, json!(user))
    })
}
