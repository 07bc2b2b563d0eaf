//! Users: who has sessions, derived from the sessions' `user` field.

use std::collections::BTreeMap;

use super::Path;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use super::json;
use crate::app::AppState;
use crate::error::ApiResult;
use crate::model::{Session, SessionStatus};
use crate::storage::SessionFilter;

/// A user is online when one of their sessions is running and was active this recently.
pub const ONLINE_WINDOW_MS: u64 = 5 * 60 * 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/users", get(list))
        .route("/api/users/{user_id}/sessions", get(sessions_of))
}

async fn all_sessions(state: &AppState, user: Option<String>) -> ApiResult<Vec<Session>> {
    let page = state
        .store()
        .list_sessions(SessionFilter {
            user,
            limit: usize::MAX,
            ..SessionFilter::default()
        })
        .await?;
    Ok(page.sessions)
}

async fn list(State(state): State<AppState>) -> ApiResult<Response> {
    let now = state.now().0;
    let mut by_user: BTreeMap<String, Vec<Session>> = BTreeMap::new();
    for s in all_sessions(&state, None).await? {
        if let Some(user) = s.user.clone() {
            by_user.entry(user).or_default().push(s);
        }
    }
    let users: Vec<_> = by_user
        .into_iter()
        .map(|(user, sessions)| {
            let online = sessions.iter().any(|s| {
                matches!(s.status, SessionStatus::InProgress | SessionStatus::Pending)
                    && now.saturating_sub(s.last_activity_at.0) <= ONLINE_WINDOW_MS
            });
            json!({
                "id": user,
                "user": user,
                "sessionCount": sessions.len(),
                "isOnline": online,
                "sessions": sessions.iter().map(|s| json!({
                    "id": s.id,
                    "status": s.status,
                    "startedAt": s.started_at,
                    "endedAt": s.ended_at,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({ "count": users.len(), "users": users }),
    ))
}

async fn sessions_of(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    let sessions = all_sessions(&state, Some(user.clone())).await?;
    Ok(json(
        StatusCode::OK,
        &json!({ "user": user, "sessionCount": sessions.len(), "sessions": sessions }),
    ))
}
