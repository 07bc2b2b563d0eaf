//! Errors of the HTTP layer and their one mapping to responses.
//!
//! Every error leaves as JSON `{"error": "<sentence>", ...details}` with the status of contract §0.
//! Storage errors ([`StoreError`]) and refused events ([`IngestError`]) are converted here,
//! once; no handler builds an error response by hand.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::domain::ingest::IngestError;
use crate::domain::model::EventType;
use crate::http::observe::Refused;
use crate::storage::StoreError;

/// One failed check of a request, `{path, message}` (the domain's validation detail).
pub(crate) use crate::domain::ingest::FieldError;

/// What a rate limiter refused, as the 429 states it: which requests, the limit, and how
/// long until the client may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateRefusal {
    /// The requests limited, in words ("event write", "read", ...).
    pub noun: &'static str,
    pub retry_after: std::time::Duration,
    /// The burst (requests allowed at once).
    pub limit: u32,
    /// Requests per second.
    pub rate: u32,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// 400: malformed JSON, a failed validation or a bad query parameter.
    #[error("{message}")]
    BadRequest {
        message: String,
        details: Vec<FieldError>,
        extra: Map<String, Value>,
    },
    /// 401, with `WWW-Authenticate: Bearer`: no API key, or not a valid one.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the request is understood and refused (e.g. a denied system path).
    #[error("{0}")]
    Forbidden(String),
    /// 404: unknown route or resource; `extra` names what was looked for.
    #[error("{message}")]
    NotFound {
        message: String,
        extra: Map<String, Value>,
    },
    /// 405.
    #[error("Method not allowed")]
    MethodNotAllowed,
    /// 408: the request body did not arrive in time; the connection is closed.
    #[error("The request body did not arrive within {secs} s")]
    RequestTimeout { secs: u64 },
    /// 409: e.g. a session id that is already taken.
    #[error("{0}")]
    Conflict(String),
    /// 413.
    #[error("Request body is too large (limit {limit} bytes)")]
    PayloadTooLarge { limit: usize },
    /// 413: one event is larger than `AFW_MAX_EVENT_BYTES`.
    #[error("Event {path} is too large: {size} bytes (limit {limit} bytes)")]
    EventTooLarge {
        path: String,
        size: usize,
        limit: usize,
    },
    /// 415.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// 429, with `Retry-After`.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    /// 429 from the rate limiter, with `Retry-After` and `RateLimit-*`.
    #[error(
        "Too many {} requests from this client: the limit is {} per second (bursts of {}); retry after {} ms",
        .0.noun, .0.rate, .0.limit, .0.retry_after.as_millis()
    )]
    RateLimited(RateRefusal),
    /// 503, with `Retry-After`: storage is unreachable; nothing was stored.
    #[error("Storage is unavailable; retry shortly")]
    Unavailable { retry_after: u64 },
    /// 503, with `Retry-After`: the server is at its connection cap.
    #[error("The server is at its connection limit; retry shortly")]
    Overloaded,
    /// 500: a bug or an unexpected storage failure. The cause is logged, never sent.
    #[error("Internal server error")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            details: Vec::new(),
            extra: Map::new(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>, details: Vec<FieldError>) -> Self {
        Self::BadRequest {
            message: message.into(),
            details,
            extra: Map::new(),
        }
    }

    pub(crate) fn field(path: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::invalid(
            format!("Validation failed: {path} {message}"),
            vec![FieldError::new(path, message)],
        )
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound {
            message: message.into(),
            extra: Map::new(),
        }
    }

    pub(crate) fn session_not_found(session_id: &str) -> Self {
        let mut extra = Map::new();
        extra.insert("sessionId".into(), Value::from(session_id));
        Self::NotFound {
            message: "Session not found".into(),
            extra,
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } | Self::EventTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } | Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } | Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Why the request was refused, for the metrics: the edge's and the server's
    /// refusals, not a request's own faults (400, 404, 409, ...).
    fn refusal(&self) -> Option<Refused> {
        let reason = match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::RequestTimeout { .. } => "timeout",
            Self::PayloadTooLarge { .. } | Self::EventTooLarge { .. } => "too_large",
            Self::TooManyRequests { .. } => "queue_full",
            Self::RateLimited(r) => {
                return Some(Refused {
                    reason: "rate_limited",
                    class: Some(r.noun),
                });
            }
            Self::Unavailable { .. } => "unavailable",
            Self::Overloaded => "overloaded",
            _ => return None,
        };
        Some(Refused {
            reason,
            class: None,
        })
    }

    /// The JSON body: `{"error": ..., ...details}`.
    pub(crate) fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("error".into(), Value::from(self.to_string()));
        match self {
            Self::BadRequest { details, extra, .. } => {
                if !details.is_empty() {
                    body.insert("details".into(), json!(details));
                }
                body.extend(extra.clone());
            }
            Self::NotFound { extra, .. } => body.extend(extra.clone()),
            Self::PayloadTooLarge { limit } | Self::EventTooLarge { limit, .. } => {
                body.insert("limit".into(), Value::from(*limit));
            }
            _ => {}
        }
        Value::Object(body)
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Invalid { message, details } => Self::invalid(message, details),
            IngestError::UnknownType { message, details } => {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                let mut extra = Map::new();
                extra.insert("knownTypes".into(), Value::from(known));
                Self::BadRequest {
                    message,
                    details,
                    extra,
                }
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::Unavailable { retry_after: 1 },
            StoreError::SessionExists(id) => Self::Conflict(format!("Session {id} already exists")),
            StoreError::CommandIdTaken(id) => {
                Self::Conflict(format!("Command id {id} is taken by another session"))
            }
            StoreError::SessionNotFound(id) => Self::session_not_found(id.as_str()),
            StoreError::InputQueueFull { limit } => Self::TooManyRequests {
                message: format!("Input queue is full ({limit} items waiting); retry later"),
                retry_after: 1,
            },
            StoreError::CommandQueueFull { limit } => Self::TooManyRequests {
                message: format!(
                    "Command queue is full ({limit} commands waiting for the agent); retry later"
                ),
                retry_after: 1,
            },
            StoreError::Corrupt(msg) => Self::Internal(msg),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(cause) => tracing::error!(%cause, "internal error"),
            Self::Unavailable { .. } => tracing::warn!("storage unavailable"),
            _ => tracing::debug!(%status, error = %self, "request rejected"),
        }
        let retry_after = match &self {
            Self::TooManyRequests { retry_after, .. } | Self::Unavailable { retry_after } => {
                Some(*retry_after)
            }
            Self::RateLimited(r) => Some(r.retry_after.as_millis().div_ceil(1000).max(1) as u64),
            Self::Overloaded => Some(1),
            _ => None,
        };
        let mut response = (status, axum::Json(self.body())).into_response();
        if let Some(refused) = self.refusal() {
            response.extensions_mut().insert(refused);
        }
        let headers = response.headers_mut();
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        match &self {
            Self::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"afw\""),
                );
            }
            Self::RateLimited(r) => {
                let reset = retry_after.unwrap_or(1);
                headers.insert("ratelimit-limit", HeaderValue::from(r.limit));
                headers.insert("ratelimit-remaining", HeaderValue::from(0));
                headers.insert("ratelimit-reset", HeaderValue::from(reset));
                let policy = format!("{};w=1;burst={}", r.rate, r.limit);
                if let Ok(v) = HeaderValue::from_str(&policy) {
                    headers.insert("ratelimit-policy", v);
                }
            }
            Self::RequestTimeout { .. } => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_event_type_answers_400_with_the_known_types() {
        let err = crate::domain::ingest::parse_event(
            bytes::Bytes::from_static(
                br#"{"type":"session:paused","sessionId":"s","timestamp":1}"#,
            ),
            "",
        )
        .unwrap_err();
        let err = ApiError::from(err);
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let body = err.body();
        assert_eq!(
            body["knownTypes"].as_array().unwrap().len(),
            EventType::ALL.len()
        );
        assert_eq!(EventType::ALL.len(), 19);
        assert!(body["error"].as_str().unwrap().contains("session:started"));
        assert_eq!(body["details"][0]["path"], "type");
    }
}
