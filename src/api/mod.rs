//! The HTTP API of spec §2: one module per resource, each exposing `router()`.
//!
//! This module owns the request plumbing every resource shares: extractors that turn every
//! malformed request into a JSON error (415 wrong content type, 413 too large, 400 bad JSON
//! or query), the JSON 404/405 fallbacks, and helpers to answer with JSON built once.

mod commands;
mod events;
mod health;
mod input;
pub use input::queue_input;
mod sessions;
mod terminal;
mod users;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::{ApiError, FieldError};
use crate::model::SessionId;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(health::router())
        .merge(sessions::router())
        .merge(events::router())
        .merge(commands::router())
        .merge(input::router())
        .merge(users::router())
        .merge(terminal::router())
}

/// Fallback for unknown routes: JSON, never HTML.
pub async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("No route for {method} {}", uri.path()))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn body_error(rejection: BytesRejection, state: &AppState) -> ApiError {
    let limit = state.config().max_body_bytes;
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else if crate::guard::is_body_timeout(&rejection) {
        ApiError::RequestTimeout {
            secs: state.config().body_timeout_secs,
        }
    } else {
        ApiError::bad_request(format!("Could not read the request body: {rejection}"))
    }
}

/// The body of a JSON request, after the content-type and size checks, as received
/// (no copy). Empty bodies are `None` so handlers with optional bodies can accept them.
/// UTF-8 is checked by the JSON parser.
pub struct JsonText(pub Option<Bytes>);

impl FromRequest<AppState> for JsonText {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let has_json_type = is_json_content_type(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| body_error(r, state))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        if !has_json_type {
            return Err(ApiError::UnsupportedMediaType);
        }
        Ok(Self(Some(bytes)))
    }
}

/// Deserialises JSON with a precise path in the error.
pub fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(
                format!("Malformed JSON: {inner}"),
                vec![FieldError::new("body", inner.to_string())],
            )
        } else {
            let path = if path == "." { "body".to_owned() } else { path };
            ApiError::invalid(
                format!("Validation failed: {path}: {inner}"),
                vec![FieldError::new(path, inner.to_string())],
            )
        }
    })
}

/// A required JSON body of type `T`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match JsonText::from_request(req, state).await?.0 {
            Some(body) => from_json(&body).map(Self),
            None => Err(ApiError::field("body", "is required (a JSON object)")),
        }
    }
}

/// An optional JSON body: an empty body is `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match JsonText::from_request(req, state).await?.0 {
            Some(body) => from_json(&body).map(Self),
            None => Ok(Self(T::default())),
        }
    }
}

/// Query parameters of type `T`; bad numbers and unknown values are a 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de).map(Self).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // serde's number errors name the parser's complaint, not the rule.
            let message = if inner.contains("invalid digit") || inner.contains("too large") {
                "must be a non-negative whole number".to_owned()
            } else {
                inner
            };
            ApiError::invalid(
                format!("Invalid query parameter {path}: {message}"),
                vec![FieldError::new(format!("query.{path}"), message)],
            )
        })
    }
}

fn form_urlencoded_parse(q: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(q.as_bytes())
}

/// Parses a session id from a path segment.
pub fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(raw).map_err(|e| ApiError::field("sessionId", e.to_string()))
}

/// A JSON response from bytes that are already JSON.
pub fn raw_json(status: StatusCode, body: impl Into<Body>) -> Response {
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

/// A JSON response with a status.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => raw_json(status, bytes),
        Err(e) => ApiError::Internal(format!("serialising a response: {e}")).into_response(),
    }
}
