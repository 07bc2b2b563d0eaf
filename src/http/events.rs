//! Events: `POST /api/events`, `POST /api/events/batch`, `GET /api/events/:sessionId`,
//! `GET /api/events/:sessionId/recent`.
//!
//! Stored events are served from their stored bytes: a listing is assembled by
//! concatenation, never by re-serialising every event.

use std::collections::BTreeMap;

use super::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use super::{ApiQuery, JsonText, from_json, json, raw_json, session_id};
use crate::domain::ingest::{MAX_BATCH, parse_event};
use crate::domain::model::{NewEvent, SessionId, StoredEvent, Timestamp};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::openapi::{Event, EventBatch, answers};
use crate::storage::{Appended, EventQuery, StoreError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) const DEFAULT_EVENTS_LIMIT: usize = 1000;
pub(super) const MAX_EVENTS_LIMIT: usize = 10_000;
/// The largest `after` a client may send: the largest whole number a JavaScript client holds
/// exactly (no session gets near it).
const MAX_SEQ: u64 = crate::domain::model::MAX_SAFE_INTEGER;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_one))
        .routes(routes!(post_batch))
        .routes(routes!(list))
        .routes(routes!(recent))
}

/// The client's `eventId`, else `<sessionId>-<seq>` (unique, and derivable from the event),
/// serialised without building a string first.
enum EventId<'a> {
    Client(String),
    Derived(&'a SessionId, u64),
}

impl Serialize for EventId<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Client(id) => s.serialize_str(id),
            Self::Derived(sid, seq) => s.collect_str(&format_args!("{sid}-{seq}")),
        }
    }
}

impl<'a> EventId<'a> {
    fn new(client: Option<String>, sid: &'a SessionId, seq: u64) -> Self {
        client.map_or(Self::Derived(sid, seq), Self::Client)
    }
}

/// One stored event, as answered to its writer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stored<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    success: Option<bool>,
    session_id: &'a SessionId,
    event_id: EventId<'a>,
    seq: u64,
    /// The incarnation of the session `seq` counts in.
    #[serde(skip_serializing_if = "str::is_empty")]
    epoch: &'a str,
    /// The session already held this `eventId`: nothing was stored, `seq` is the original.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

fn client_event_id(ev: &NewEvent) -> Option<String> {
    ev.event_id().map(str::to_owned)
}

/// One event may not exceed `AFW_MAX_EVENT_BYTES` (as received).
fn check_size(state: &AppState, raw: &[u8], path: &str) -> ApiResult<()> {
    let limit = state.config().max_event_bytes;
    if raw.len() > limit {
        return Err(ApiError::EventTooLarge {
            path: path.to_owned(),
            size: raw.len(),
            limit,
        });
    }
    Ok(())
}

/// 201 for a stored event; 200 for a retry of one already stored (`duplicate: true`, its
/// original `seq`): nothing new was created.
#[utoipa::path(
    post, path = "/api/events", operation_id = "postEvent", tag = "events",
    request_body = Event,
    responses(
        (status = 201, description = "Stored (and broadcast)", body = answers::EventStored),
        (status = 200, description = "Already stored under this `eventId`: nothing stored, the original `seq`", body = answers::EventStored),
    ),
)]
async fn post_one(State(state): State<AppState>, JsonText(body): JsonText) -> ApiResult<Response> {
    let body = body.ok_or_else(|| ApiError::field("body", "is required (an event object)"))?;
    check_size(&state, &body, "body")?;
    let ev = parse_event(body, "")?;
    let sid = ev.session_id.clone();
    let client_id = client_event_id(&ev);
    let outcomes = state.append_events(&sid, vec![ev]).await?;
    let Some(Appended {
        seq,
        duplicate,
        epoch,
    }) = outcomes.first()
    else {
        return Err(ApiError::Internal("the store answered no outcome".into()));
    };
    let (seq, duplicate) = (*seq, *duplicate);
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut res = json(
        status,
        &Stored {
            success: Some(true),
            session_id: &sid,
            event_id: EventId::new(client_id, &sid, seq),
            seq,
            epoch,
            duplicate,
        },
    );
    res.extensions_mut()
        .insert(crate::http::observe::SessionOf(sid.to_string()));
    Ok(res)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// One event of a batch that was not stored, and why (its session's append failed).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NotStored<'a> {
    session_id: &'a SessionId,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    error: String,
    status: u16,
}

/// What became of one event of a batch.
#[derive(Serialize)]
#[serde(untagged)]
enum ItemResult<'a> {
    Stored(Stored<'a>),
    NotStored(NotStored<'a>),
}

/// Every event of a batch is validated before any is stored (a 400 stores nothing). Then
/// the events of each session are appended atomically, one session after the other in the
/// order they first appear; sessions are independent, so one session's failure does not
/// undo another's success. The answer says, per event, what happened: 201 when every event
/// is stored (or was already), 207 with `results[i].error` for the events that were not
/// when only some sessions failed, and the plain error (503 ...) when none was stored.
#[utoipa::path(
    post, path = "/api/events/batch", operation_id = "postEventBatch", tag = "events",
    request_body = EventBatch,
    responses(
        (status = 201, description = "Every event stored (or already stored)", body = answers::BatchStored),
        (status = 207, description = "Some sessions' events were not stored (`results[i].error`); re-sending the batch is safe", body = answers::BatchStored),
    ),
)]
async fn post_batch(
    State(state): State<AppState>,
    JsonText(body): JsonText,
) -> ApiResult<Response> {
    let body = body.ok_or_else(|| ApiError::field("body", "is required ({\"events\": [...]})"))?;
    let batch: Batch<'_> = from_json(&body)?;
    if batch.events.is_empty() {
        return Err(ApiError::field("events", "must contain at least one event"));
    }
    if batch.events.len() > MAX_BATCH {
        return Err(ApiError::field(
            "events",
            format!("must contain at most {MAX_BATCH} events"),
        ));
    }
    let mut events = Vec::with_capacity(batch.events.len());
    let mut details = Vec::new();
    for (i, raw) in batch.events.iter().enumerate() {
        check_size(&state, raw.get().as_bytes(), &format!("events[{i}]"))?;
        match parse_event(
            body.slice_ref(raw.get().as_bytes()),
            &format!("events[{i}]"),
        ) {
            Ok(ev) => events.push(ev),
            Err(e) => details.extend(e.into_details()),
        }
    }
    if !details.is_empty() {
        return Err(ApiError::invalid(
            format!(
                "{} invalid field(s) in the batch; nothing was stored",
                details.len()
            ),
            details,
        ));
    }
    let ids: Vec<Option<String>> = events.iter().map(client_event_id).collect();
    let sids: Vec<SessionId> = events.iter().map(|e| e.session_id.clone()).collect();
    let outcomes = append_by_session(&state, events).await;
    let failures: Vec<&StoreError> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    if let Some(&first) = failures.first()
        && failures.len() == outcomes.len()
    {
        // Nothing was stored: the plain error says so (with its Retry-After).
        return Err(ApiError::from(first.clone()));
    }
    let results: Vec<ItemResult<'_>> = outcomes
        .iter()
        .zip(&sids)
        .zip(&ids)
        .map(|((outcome, sid), id)| match outcome {
            Ok(a) => ItemResult::Stored(Stored {
                success: None,
                session_id: sid,
                event_id: EventId::new(id.clone(), sid, a.seq),
                seq: a.seq,
                epoch: &a.epoch,
                duplicate: a.duplicate,
            }),
            Err(e) => {
                let e = ApiError::from(e.clone());
                ItemResult::NotStored(NotStored {
                    session_id: sid,
                    event_id: id.as_deref(),
                    error: e.to_string(),
                    status: e.status().as_u16(),
                })
            }
        })
        .collect();
    let stored = outcomes.len() - failures.len();
    if failures.is_empty() {
        return Ok(json(
            StatusCode::CREATED,
            &json!({ "success": true, "count": stored, "results": results }),
        ));
    }
    Ok(json(
        StatusCode::MULTI_STATUS,
        &json!({
            "success": false,
            "error": format!(
                "{} of {} events were not stored (see results[i].error); retrying them with \
                 their eventId is safe",
                failures.len(),
                outcomes.len()
            ),
            "count": stored,
            "results": results,
        }),
    ))
}

/// Appends the events of each session atomically, sessions in the order they first
/// appear; one outcome per event, in the batch's order.
async fn append_by_session(
    state: &AppState,
    events: Vec<NewEvent>,
) -> Vec<Result<Appended, StoreError>> {
    let total = events.len();
    let mut order: Vec<SessionId> = Vec::new();
    let mut groups: BTreeMap<SessionId, Vec<(usize, NewEvent)>> = BTreeMap::new();
    for (i, ev) in events.into_iter().enumerate() {
        let group = groups.entry(ev.session_id.clone()).or_default();
        if group.is_empty() {
            order.push(ev.session_id.clone());
        }
        group.push((i, ev));
    }
    let mut outcomes: Vec<Option<Result<Appended, StoreError>>> = vec![None; total];
    for sid in order {
        let group = groups.remove(&sid).unwrap_or_default();
        let (positions, evs): (Vec<usize>, Vec<NewEvent>) = group.into_iter().unzip();
        match state.append_events(&sid, evs).await {
            Ok(appended) => {
                for (pos, a) in positions.into_iter().zip(appended) {
                    outcomes[pos] = Some(Ok(a));
                }
            }
            Err(e) => {
                for pos in positions {
                    outcomes[pos] = Some(Err(e.clone()));
                }
            }
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(StoreError::Corrupt("an event got no outcome".into()))))
        .collect()
}

/// `{"sessionId":..,"count":N,"events":[...],<extra>}` from stored bytes.
/// How many of `events` (from the first) fit in `max` response bytes; at least one, so a
/// client paging by `after` always moves on.
fn fitting(events: &[StoredEvent], max: usize) -> usize {
    let mut total = 0;
    for (i, ev) in events.iter().enumerate() {
        total += ev.json.len() + 1;
        if total > max && i > 0 {
            return i;
        }
    }
    events.len()
}

fn events_body(
    sid: &SessionId,
    events: &[StoredEvent],
    extra: &[(&str, serde_json::Value)],
) -> Vec<u8> {
    let size: usize = events.iter().map(|e| e.json.len() + 1).sum();
    let mut out = Vec::with_capacity(size + 128);
    out.extend_from_slice(b"{\"sessionId\":");
    out.extend_from_slice(json!(sid).to_string().as_bytes());
    out.extend_from_slice(format!(",\"count\":{}", events.len()).as_bytes());
    for (key, value) in extra {
        out.extend_from_slice(format!(",\"{key}\":{value}").as_bytes());
    }
    out.extend_from_slice(b",\"events\":[");
    for (i, ev) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&ev.json);
    }
    out.extend_from_slice(b"]}");
    out
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only events at or after this instant (RFC 3339).
    #[param(value_type = Option<Timestamp>)]
    since: Option<String>,
    /// Only events with a larger `seq`: the exact resume cursor.
    #[param(maximum = 9007199254740991_u64)]
    after: Option<u64>,
    /// The epoch `after` counts in (from an earlier answer or confirmation).
    epoch: Option<String>,
    /// Events per page (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

#[utoipa::path(
    get, path = "/api/events/{session_id}", operation_id = "listEvents", tag = "events",
    params(("session_id" = SessionId, Path, description = "The session's id"), ListQuery),
    responses((status = 200, description = "The session's events in `seq` order (empty for an unknown session)", body = answers::EventList)),
)]
async fn list(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    let sid = session_id(&sid)?;
    let limit = q.limit.unwrap_or(DEFAULT_EVENTS_LIMIT);
    if !(1..=MAX_EVENTS_LIMIT).contains(&limit) {
        return Err(ApiError::field(
            "query.limit",
            format!("must be between 1 and {MAX_EVENTS_LIMIT}"),
        ));
    }
    if q.after.is_some_and(|a| a > MAX_SEQ) {
        return Err(ApiError::field(
            "query.after",
            format!("must be at most {MAX_SEQ}"),
        ));
    }
    let since = q
        .since
        .as_deref()
        .map(|s| {
            Timestamp::parse_rfc3339(s)
                .ok_or_else(|| ApiError::field("query.since", "must be an RFC 3339 date-time"))
        })
        .transpose()?;
    let query = EventQuery {
        after: q.after,
        since,
        limit,
        newest: false,
    };
    let mut page = state.store().read_events(&sid, query).await?;
    // `after` counts in the client's epoch: in another incarnation of the session it
    // means nothing, so the client starts over from seq 0 of the stored one.
    let restarted = q.after.is_some()
        && matches!((&q.epoch, &page.epoch), (Some(mine), Some(stored)) if mine != stored);
    if restarted {
        let from_start = EventQuery {
            after: Some(0),
            ..query
        };
        page = state.store().read_events(&sid, from_start).await?;
    }
    // Bounded in bytes as well as items: a page that stops early says where to go on.
    let n = fitting(&page.events, state.config().max_response_bytes);
    let mut extra = vec![("lastSeq", json!(page.last_seq))];
    if let Some(epoch) = &page.epoch {
        extra.push(("epoch", json!(epoch)));
    }
    if restarted {
        extra.push(("recovered", json!(false)));
    }
    if n < page.events.len() {
        extra.push(("more", json!(true)));
        extra.push(("nextAfter", json!(page.events[n - 1].seq)));
    }
    let body = events_body(&sid, &page.events[..n], &extra);
    Ok(raw_json(StatusCode::OK, body))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RecentQuery {
    /// At most this many, the newest (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// How far back, in seconds (default 60).
    #[param(maximum = 604800)]
    seconds: Option<u64>,
}

#[utoipa::path(
    get, path = "/api/events/{session_id}/recent", operation_id = "recentEvents", tag = "events",
    params(("session_id" = SessionId, Path, description = "The session's id"), RecentQuery),
    responses((status = 200, description = "The newest events of the last `seconds`, oldest first", body = answers::RecentEvents)),
)]
async fn recent(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    ApiQuery(q): ApiQuery<RecentQuery>,
) -> ApiResult<Response> {
    let sid = session_id(&sid)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("query.limit", "must be between 1 and 1000"));
    }
    let seconds = q.seconds.unwrap_or(60);
    if seconds > 7 * 24 * 3600 {
        return Err(ApiError::field(
            "query.seconds",
            "must be at most 604800 (7 days)",
        ));
    }
    let cutoff = Timestamp(state.now().0.saturating_sub(seconds * 1000));
    let page = state
        .store()
        .read_events(
            &sid,
            EventQuery {
                after: None,
                since: Some(cutoff),
                limit,
                newest: true,
            },
        )
        .await?;
    // The newest that fit in the byte bound.
    let mut newest_first: Vec<StoredEvent> = page.events.iter().rev().cloned().collect();
    newest_first.truncate(fitting(&newest_first, state.config().max_response_bytes));
    newest_first.reverse();
    let body = events_body(&sid, &newest_first, &[("cutoffTime", json!(cutoff))]);
    Ok(raw_json(StatusCode::OK, body))
}
