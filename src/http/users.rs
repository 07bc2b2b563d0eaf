//! Users: who has sessions, derived from the sessions' `user` field.

use std::collections::BTreeMap;

use super::Path;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiQuery, json_array, raw_json, serialize_within};
use crate::domain::model::{Session, SessionStatus};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::storage::SessionFilter;

/// A user is online when one of their sessions is running and was active this recently.
pub(super) const ONLINE_WINDOW_MS: u64 = 5 * 60 * 1000;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/users", get(list))
        .route("/api/users/{user_id}/sessions", get(sessions_of))
}

/// Users are derived from at most this many sessions (the most recently active).
pub(super) const MAX_SCANNED_SESSIONS: usize = 10_000;
/// A user entry lists at most this many of their sessions (newest activity first);
/// `sessionCount` counts them all.
pub(super) const MAX_SESSIONS_PER_USER: usize = 100;
const DEFAULT_USERS_LIMIT: usize = 100;
const MAX_USERS_LIMIT: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
    /// The last user of the previous page.
    cursor: Option<String>,
}

fn checked_limit(limit: Option<usize>, default: usize, max: usize) -> ApiResult<usize> {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::field(
            "query.limit",
            format!("must be between 1 and {max}"),
        ));
    }
    Ok(limit)
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    let limit = checked_limit(q.limit, DEFAULT_USERS_LIMIT, MAX_USERS_LIMIT)?;
    let now = state.now().0;
    let page = state
        .store()
        .list_sessions(SessionFilter {
            limit: MAX_SCANNED_SESSIONS,
            ..SessionFilter::default()
        })
        .await?;
    let mut by_user: BTreeMap<String, Vec<Session>> = BTreeMap::new();
    for s in page.sessions {
        if let Some(user) = s.user.clone()
            && q.cursor.as_ref().is_none_or(|c| user > *c)
        {
            by_user.entry(user).or_default().push(s);
        }
    }
    let more_users = by_user.len() > limit;
    let users: Vec<Value> = by_user
        .into_iter()
        .take(limit)
        .map(|(user, sessions)| user_entry(user, &sessions, now))
        .collect();
    let (texts, all) = serialize_within(&users, state.config().max_response_bytes)?;
    let mut body = format!(
        r#"{{"count":{},"users":{}"#,
        texts.len(),
        json_array(&texts)
    );
    if (more_users || !all)
        && let Some(last) = users.get(texts.len() - 1)
    {
        body.push_str(&format!(r#","nextCursor":{}"#, last["user"]));
    }
    body.push('}');
    Ok(raw_json(StatusCode::OK, body))
}

fn user_entry(user: String, sessions: &[Session], now: u64) -> Value {
    let online = sessions.iter().any(|s| {
        matches!(s.status, SessionStatus::InProgress | SessionStatus::Pending)
            && now.saturating_sub(s.last_activity_at.0) <= ONLINE_WINDOW_MS
    });
    json!({
        "id": user,
        "user": user,
        "sessionCount": sessions.len(),
        "isOnline": online,
        "sessions": sessions.iter().take(MAX_SESSIONS_PER_USER).map(|s| json!({
            "id": s.id,
            "status": s.status,
            "startedAt": s.started_at,
            "endedAt": s.ended_at,
        })).collect::<Vec<_>>(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionsQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

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
