//! Events: `POST /api/events`, `POST /api/events/batch`, `GET /api/events/:sessionId`,
//! `GET /api/events/:sessionId/recent`.
//!
//! Stored events are served from their stored bytes: a listing is assembled by
//! concatenation, never by re-serialising every event.

use std::collections::BTreeMap;

use super::Path;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use super::{ApiQuery, JsonText, from_json, json, raw_json, session_id};
use crate::domain::ingest::{MAX_BATCH, parse_event};
use crate::domain::model::{NewEvent, SessionId, StoredEvent, Timestamp};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::storage::EventQuery;

pub(super) const DEFAULT_EVENTS_LIMIT: usize = 1000;
pub(super) const MAX_EVENTS_LIMIT: usize = 10_000;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/events", post(post_one))
        .route("/api/events/batch", post(post_batch))
        .route("/api/events/{session_id}", get(list))
        .route("/api/events/{session_id}/recent", get(recent))
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
}

fn client_event_id(ev: &NewEvent) -> Option<String> {
    ev.str_field("eventId").map(str::to_owned)
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

async fn post_one(State(state): State<AppState>, JsonText(body): JsonText) -> ApiResult<Response> {
    let body = body.ok_or_else(|| ApiError::field("body", "is required (an event object)"))?;
    check_size(&state, &body, "body")?;
    let ev = parse_event(body, "")?;
    let sid = ev.session_id.clone();
    let client_id = client_event_id(&ev);
    let seqs = state.store().append_events(&sid, vec![ev]).await?;
    let seq = seqs.first().copied().unwrap_or_default();
    Ok(json(
        StatusCode::CREATED,
        &Stored {
            success: Some(true),
            session_id: &sid,
            event_id: EventId::new(client_id, &sid, seq),
            seq,
        },
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

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
    // All or nothing: every event is validated before any is stored.
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
    // One atomic append per session, in the order the sessions first appear.
    let mut order: Vec<SessionId> = Vec::new();
    let mut groups: BTreeMap<SessionId, Vec<(usize, NewEvent)>> = BTreeMap::new();
    for (i, ev) in events.into_iter().enumerate() {
        let group = groups.entry(ev.session_id.clone()).or_default();
        if group.is_empty() {
            order.push(ev.session_id.clone());
        }
        group.push((i, ev));
    }
    let mut stored: Vec<(SessionId, Option<String>, usize, u64)> = Vec::new();
    for sid in order {
        let group = groups.remove(&sid).unwrap_or_default();
        let (positions, evs): (Vec<usize>, Vec<NewEvent>) = group.into_iter().unzip();
        let ids: Vec<Option<String>> = evs.iter().map(client_event_id).collect();
        let seqs = state.store().append_events(&sid, evs).await?;
        for ((pos, seq), id) in positions.into_iter().zip(seqs).zip(ids) {
            stored.push((sid.clone(), id, pos, seq));
        }
    }
    stored.sort_by_key(|(_, _, pos, _)| *pos);
    let results: Vec<Stored<'_>> = stored
        .iter()
        .map(|(sid, id, _, seq)| Stored {
            success: None,
            session_id: sid,
            event_id: EventId::new(id.clone(), sid, *seq),
            seq: *seq,
        })
        .collect();
    Ok(json(
        StatusCode::CREATED,
        &json!({ "success": true, "count": results.len(), "results": results }),
    ))
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    since: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
}

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
    let since = q
        .since
        .as_deref()
        .map(|s| {
            Timestamp::parse_rfc3339(s)
                .ok_or_else(|| ApiError::field("query.since", "must be an RFC 3339 date-time"))
        })
        .transpose()?;
    let page = state
        .store()
        .read_events(
            &sid,
            EventQuery {
                after: q.after,
                since,
                limit,
                newest: false,
            },
        )
        .await?;
    // Bounded in bytes as well as items: a page that stops early says where to go on.
    let n = fitting(&page.events, state.config().max_response_bytes);
    let mut extra = vec![("lastSeq", json!(page.last_seq))];
    if n < page.events.len() {
        extra.push(("more", json!(true)));
        extra.push(("nextAfter", json!(page.events[n - 1].seq)));
    }
    let body = events_body(&sid, &page.events[..n], &extra);
    Ok(raw_json(StatusCode::OK, body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecentQuery {
    limit: Option<usize>,
    seconds: Option<u64>,
}

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
