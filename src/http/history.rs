//! History (contract §2 "History", §5): archived sessions by UTC date, read from the
//! archive port. Every date and session id in a path or query is validated before the
//! archive sees it; nothing here may touch the live store or build a file path.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::users::checked_limit;
use super::{ApiQuery, Path, json, raw_json, session_id};
use crate::archive::{Archive, ArchiveError, Date, Page};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::openapi::answers;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const DEFAULT_DATES_LIMIT: usize = 100;
const MAX_DATES_LIMIT: usize = 1000;
const DEFAULT_SESSIONS_LIMIT: usize = 1000;
const MAX_SESSIONS_LIMIT: usize = 10_000;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(dates))
        .routes(routes!(sessions_of))
        .routes(routes!(session))
        .routes(routes!(stats))
        .routes(routes!(cleanup))
}

impl From<ArchiveError> for ApiError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::Unavailable(_) => Self::Unavailable { retry_after: 1 },
            ArchiveError::Corrupt(why) => Self::Internal(why),
        }
    }
}

fn archive(state: &AppState) -> ApiResult<&dyn Archive> {
    state
        .archiver()
        .map(|a| a.archive().as_ref())
        .ok_or_else(|| ApiError::not_found("History is off on this server (AFW_ARCHIVE=off)"))
}

fn date(field: &str, text: &str) -> ApiResult<Date> {
    Date::parse(text).ok_or_else(|| ApiError::field(field, "must be a UTC date, YYYY-MM-DD"))
}

/// A page of dates.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DatesQuery {
    /// Dates per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Dates to skip.
    #[param(minimum = 0, maximum = 1000000)]
    offset: Option<usize>,
}

/// A page of session ids.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SessionsQuery {
    /// Session ids per page (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// Session ids to skip.
    #[param(minimum = 0, maximum = 1000000)]
    offset: Option<usize>,
}

/// Offsets past this are refused (a listing that long is paged by date instead).
const MAX_OFFSET: usize = 1_000_000;

fn page(
    limit: Option<usize>,
    offset: Option<usize>,
    default: usize,
    max: usize,
) -> ApiResult<Page> {
    let offset = offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(ApiError::field(
            "query.offset",
            format!("must be at most {MAX_OFFSET}"),
        ));
    }
    Ok(Page {
        offset,
        limit: checked_limit(limit, default, max)?,
    })
}

/// The id of an archived session: a session id that is not only dots (documentation
/// only; [`session`] checks it).
struct HistoryId;

impl utoipa::PartialSchema for HistoryId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^(?![.]+$)[A-Za-z0-9_.:-]{1,200}$"))
            .description(Some(
                "A session id (1 to 200 of A-Z, a-z, 0-9, _ . : -), not only dots",
            ))
            .into()
    }
}

impl utoipa::ToSchema for HistoryId {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Dates {
    dates: Vec<String>,
    total: usize,
}

/// Dates holding archived sessions, newest first.
#[utoipa::path(
    get, path = "/api/history/dates", operation_id = "historyDates", tag = "history",
    params(DatesQuery),
    responses((status = 200, description = "UTC dates, newest first", body = answers::HistoryDates)),
)]
async fn dates(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<DatesQuery>,
) -> ApiResult<Response> {
    let page = page(q.limit, q.offset, DEFAULT_DATES_LIMIT, MAX_DATES_LIMIT)?;
    let listing = archive(&state)?.dates(page).await?;
    Ok(json(
        StatusCode::OK,
        &Dates {
            dates: listing.items.iter().map(Date::to_string).collect(),
            total: listing.total,
        },
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionsOfDate {
    date: String,
    session_ids: Vec<String>,
    total: usize,
}

/// Session ids archived under a date.
#[utoipa::path(
    get, path = "/api/history/sessions/{date}", operation_id = "historySessions", tag = "history",
    params(("date" = inline(Date), Path, description = "A UTC date, YYYY-MM-DD"), SessionsQuery),
    responses((status = 200, description = "The date's session ids, in order", body = answers::HistorySessions)),
)]
async fn sessions_of(
    State(state): State<AppState>,
    Path(day): Path<String>,
    ApiQuery(q): ApiQuery<SessionsQuery>,
) -> ApiResult<Response> {
    let day = date("date", &day)?;
    let page = page(
        q.limit,
        q.offset,
        DEFAULT_SESSIONS_LIMIT,
        MAX_SESSIONS_LIMIT,
    )?;
    let listing = archive(&state)?.sessions(day, page).await?;
    Ok(json(
        StatusCode::OK,
        &SessionsOfDate {
            date: day.to_string(),
            session_ids: listing.items.iter().map(|s| s.to_string()).collect(),
            total: listing.total,
        },
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SessionQuery {
    /// Only the snapshot filed under this UTC date (YYYY-MM-DD); without it, the newest.
    #[param(value_type = Option<Date>, inline)]
    date: Option<String>,
}

/// One archived session: `{session, events, chains, epoch, savedAt}`.
#[utoipa::path(
    get, path = "/api/history/session/{id}", operation_id = "historySession", tag = "history",
    params(("id" = inline(HistoryId), Path, description = "The session's id"), SessionQuery),
    responses(
        (status = 200, description = "The newest snapshot", body = answers::HistorySnapshot),
        (status = 404, description = "Not archived (under that date)", body = answers::ErrorBody),
    ),
)]
async fn session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SessionQuery>,
) -> ApiResult<Response> {
    let id = session_id(&id)?;
    if id.as_str().bytes().all(|b| b == b'.') {
        // A valid session id, but never one the history serves: `.` and `..` read as
        // directories to anything that files snapshots by name.
        return Err(ApiError::field("id", "must not be only dots"));
    }
    let day = q
        .date
        .as_deref()
        .map(|d| date("query.date", d))
        .transpose()?;
    let body = archive(&state)?
        .get(&id, day)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Session {id} is not in the history")))?;
    Ok(raw_json(StatusCode::OK, body))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HistoryStats {
    total_dates: usize,
    total_sessions: usize,
    oldest_date: Option<String>,
    newest_date: Option<String>,
    /// `dir` or `postgres`.
    archive: &'static str,
    retention_days: u32,
    /// Sessions waiting to be archived by this instance.
    pending: usize,
}

/// What the archive holds.
#[utoipa::path(
    get, path = "/api/history/stats", operation_id = "historyStats", tag = "history",
    responses((status = 200, description = "Counts and the date range", body = answers::HistoryStats)),
)]
async fn stats(State(state): State<AppState>) -> ApiResult<Response> {
    let archive = archive(&state)?;
    let stats = archive.stats().await?;
    let pending = state.archiver().map_or(0, |a| a.pending());
    Ok(json(
        StatusCode::OK,
        &HistoryStats {
            total_dates: stats.dates,
            total_sessions: stats.sessions,
            oldest_date: stats.oldest.map(|d| d.to_string()),
            newest_date: stats.newest.map(|d| d.to_string()),
            archive: archive.kind(),
            retention_days: state.config().archive_retention_days,
            pending,
        },
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CleanedUp {
    deleted_count: usize,
    deleted_sessions: usize,
    message: String,
}

/// Removes the dates past `AFW_ARCHIVE_RETENTION_DAYS` now (0 keeps everything).
#[utoipa::path(
    post, path = "/api/history/cleanup", operation_id = "historyCleanup", tag = "history",
    responses((status = 200, description = "What was removed", body = answers::HistoryCleanup)),
)]
async fn cleanup(State(state): State<AppState>) -> ApiResult<Response> {
    let archive = archive(&state)?;
    let days = state.config().archive_retention_days;
    let cleaned = if days == 0 {
        crate::archive::Cleaned::default()
    } else {
        let today = Date::of(state.now());
        archive.cleanup(today.minus_days(days - 1)).await?
    };
    Ok(json(
        StatusCode::OK,
        &CleanedUp {
            deleted_count: cleaned.dates,
            deleted_sessions: cleaned.sessions,
            message: format!("Deleted {} old date folders", cleaned.dates),
        },
    ))
}
