//! Answers with JSON built once: from a value, from bytes that already are JSON, or from a
//! list serialised item by item within a byte bound (listings stay bounded).
//!
//! Building responses only: nothing here may parse requests or touch the store.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::error::{ApiError, ApiResult};

/// A JSON response from bytes that are already JSON.
pub(super) fn raw_json(status: StatusCode, body: impl Into<Body>) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.into(),
    )
        .into_response()
}

/// Serialises `items` one by one until `max` bytes; at least one. The JSON texts and
/// whether all of them fit.
pub(super) fn serialize_within<T: Serialize>(
    items: &[T],
    max: usize,
) -> ApiResult<(Vec<String>, bool)> {
    let mut out = Vec::with_capacity(items.len());
    let mut total = 0;
    for item in items {
        let text = serde_json::to_string(item)
            .map_err(|e| ApiError::Internal(format!("serialising a response: {e}")))?;
        total += text.len() + 1;
        if total > max && !out.is_empty() {
            return Ok((out, false));
        }
        out.push(text);
    }
    Ok((out, true))
}

/// `[a,b,c]` from JSON texts.
pub(super) fn json_array(items: &[String]) -> String {
    let mut out = String::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 2);
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push(']');
    out
}

/// A JSON response with a status.
pub(super) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => raw_json(status, bytes),
        Err(e) => ApiError::Internal(format!("serialising a response: {e}")).into_response(),
    }
}
