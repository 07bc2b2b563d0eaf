//! Terminal output captured by the output-capture hook, stored as `terminal:output` events.

use super::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiJson, ApiQuery, json, session_id};
use crate::domain::ingest::event_from_map;
use crate::domain::model::EventType;
use crate::domain::model::SessionId;
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::openapi::answers;
use crate::storage::EventQuery;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(output))
        .routes(routes!(buffer))
}

/// Captured output, stored as a `terminal:output` event and broadcast.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Output {
    /// At most 1 MiB.
    output: String,
    /// `stdout` (the default) or `stderr`.
    #[serde(default = "stdout")]
    #[schema(pattern = "^(stdout|stderr)$")]
    stream: String,
    /// 1 to 10000.
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 10000)]
    step_number: Option<Value>,
    action: Option<String>,
}

fn stdout() -> String {
    "stdout".to_owned()
}

#[utoipa::path(
    post, path = "/api/terminal/{session_id}/output", operation_id = "postTerminalOutput", tag = "terminal",
    params(("session_id" = SessionId, Path, description = "The session's id")),
    request_body = Output,
    responses((status = 200, description = "Stored and broadcast", body = answers::OutputBuffered)),
)]
async fn output(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    ApiJson(body): ApiJson<Output>,
) -> ApiResult<Response> {
    let sid = session_id(&sid)?;
    if body.output.len() > MAX_OUTPUT_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_OUTPUT_BYTES,
        });
    }
    if body.stream != "stdout" && body.stream != "stderr" {
        return Err(ApiError::field("stream", "must be stdout or stderr"));
    }
    let size = body.output.len();
    let mut fields = Map::new();
    fields.insert(
        "type".into(),
        Value::from(EventType::TerminalOutput.as_str()),
    );
    fields.insert("sessionId".into(), json!(sid));
    fields.insert("timestamp".into(), json!(state.now()));
    fields.insert("output".into(), Value::from(body.output));
    fields.insert("stream".into(), Value::from(body.stream));
    // Checked with the event (1..=10 000, as for any event's stepNumber).
    if let Some(n) = body.step_number {
        fields.insert("stepNumber".into(), n);
    }
    if let Some(a) = body.action {
        fields.insert("action".into(), Value::from(a));
    }
    let ev = event_from_map(fields)?;
    let appended = state.append_events(&sid, vec![ev]).await?;
    Ok(json(
        StatusCode::OK,
        &json!({
            "success": true,
            "buffered": true,
            "bytes": size,
            "seq": appended.first().map(|a| a.seq).unwrap_or_default(),
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct BufferQuery {
    /// At most this many outputs, the newest (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[utoipa::path(
    get, path = "/api/terminal/{session_id}/buffer", operation_id = "terminalBuffer", tag = "terminal",
    params(("session_id" = SessionId, Path, description = "The session's id"), BufferQuery),
    responses((status = 200, description = "The newest output, oldest first", body = answers::TerminalBuffer)),
)]
async fn buffer(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    ApiQuery(q): ApiQuery<BufferQuery>,
) -> ApiResult<Response> {
    let sid = session_id(&sid)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("query.limit", "must be between 1 and 1000"));
    }
    let page = state
        .store()
        .read_events(
            &sid,
            EventQuery {
                limit: usize::MAX,
                ..EventQuery::default()
            },
        )
        .await?;
    let outputs: Vec<Value> = page
        .events
        .iter()
        .filter(|e| e.kind == EventType::TerminalOutput)
        .filter_map(|e| serde_json::from_slice::<Value>(&e.json).ok())
        // A `terminal:output` event posted to /api/events may lack its output: it is kept
        // in the history, but the buffer holds output only.
        .filter(|v| v["output"].is_string())
        .collect();
    let total_size: usize = outputs
        .iter()
        .filter_map(|v| v["output"].as_str())
        .map(str::len)
        .sum();
    let mut skip = outputs.len().saturating_sub(limit);
    // Bounded in bytes too: the newest outputs that fit in AFW_MAX_RESPONSE_BYTES.
    let max = state.config().max_response_bytes;
    let mut bytes = 0;
    for (i, v) in outputs.iter().enumerate().skip(skip).rev() {
        bytes += v["output"].as_str().map_or(0, str::len) + 128;
        if bytes > max && i + 1 < outputs.len() {
            skip = i + 1;
            break;
        }
    }
    let buffer: Vec<Value> = outputs[skip..]
        .iter()
        .map(|v| {
            json!({
                "output": v["output"],
                "stream": v["stream"].as_str().unwrap_or("stdout"),
                "stepNumber": v["stepNumber"],
                "action": v["action"],
                "timestamp": v["timestamp"],
                "seq": v["seq"],
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({
            "sessionId": sid,
            "buffer": buffer,
            "totalSize": total_size,
            "returned": buffer.len(),
            "truncated": skip > 0,
        }),
    ))
}
