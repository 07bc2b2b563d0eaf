//! Extractors that turn every malformed request into a JSON error: 415 for a wrong content
//! type, 413 for a body too large, 400 for bad JSON, a bad query or a bad path segment, with
//! serde's messages put in the API's words.
//!
//! Parsing only: nothing here may touch the store or the bus, or build a success response
//! (that is [`super::respond`]).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::domain::model::SessionId;
use crate::http::AppState;
use crate::http::error::{ApiError, FieldError};

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
    } else if crate::http::guard::is_body_timeout(&rejection) {
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
pub(super) struct JsonText(pub Option<Bytes>);

impl FromRequest<AppState> for JsonText {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let has_json_type = is_json_content_type(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| body_error(r, state))?;
        // A JSON `null` says "nothing", like no body at all.
        if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
            return Ok(Self(None));
        }
        if !has_json_type {
            return Err(ApiError::UnsupportedMediaType);
        }
        // Every body of the API is an object (serde would take `[1, 2]` for a struct).
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(ApiError::field("body", "must be a JSON object"));
        }
        Ok(Self(Some(bytes)))
    }
}

/// Deserialises JSON with a precise path in the error.
pub(super) fn from_json<'de, T: serde::Deserialize<'de>>(body: &'de [u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(
                format!("Malformed JSON: {inner}"),
                vec![FieldError::new("body", inner.to_string())],
            )
        } else {
            let path = if path == "." { "body".to_owned() } else { path };
            let message = api_words(&inner.to_string());
            ApiError::invalid(
                format!("Validation failed: {path}: {message}"),
                vec![FieldError::new(path, message)],
            )
        }
    })?;
    // One JSON value, then nothing but whitespace.
    de.end().map_err(|_| {
        ApiError::invalid(
            "Malformed JSON: unexpected data after the JSON value",
            vec![FieldError::new(
                "body",
                "must hold one JSON value and nothing after it",
            )],
        )
    })?;
    Ok(value)
}

/// serde's messages in the API's words: JSON types instead of Rust types, and no Rust
/// type names (`expected struct Ack` says nothing to a client).
pub(super) fn api_words(message: &str) -> String {
    const MARK: &str = "expected ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let tail = &rest[at + MARK.len()..];
        let word_end = |s: &str| s.find([' ', ',']).unwrap_or(s.len());
        let first = &tail[..word_end(tail)];
        // `struct Ack`, `enum CommandType`, `unit struct X`: drop the Rust name too.
        let mut consumed = first.len();
        for _ in 0..match first {
            "struct" | "enum" => 1,
            "unit" => 2,
            _ => 0,
        } {
            let more = tail[consumed..].trim_start_matches(' ');
            consumed = tail.len() - more.len() + word_end(more);
        }
        let plain = match first {
            "struct" | "map" => Some("a JSON object"),
            "enum" => Some("one of the allowed values"),
            "unit" => Some("null"),
            "u8" | "u16" | "u32" | "u64" | "usize" => Some("a non-negative whole number"),
            "i8" | "i16" | "i32" | "i64" | "isize" => Some("a whole number"),
            "f32" | "f64" => Some("a number"),
            "sequence" | "tuple" => Some("an array"),
            _ => None,
        };
        out.push_str(MARK);
        match plain {
            Some(p) => {
                out.push_str(p);
                rest = &tail[consumed..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// A required JSON body of type `T`.
pub(super) struct ApiJson<T>(pub T);

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
pub(super) struct OptionalJson<T>(pub T);

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
pub(super) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de).map(Self).map_err(|e| {
            let path = e.path().to_string();
            let inner = api_words(&e.into_inner().to_string());
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

/// Path parameters; a segment that cannot be decoded (invalid UTF-8 after percent
/// decoding) is a JSON 400 like every other bad input.
pub(super) struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let (path, message) = match e.kind() {
                    ErrorKind::InvalidUtf8InPathParam { key } => {
                        (format!("path.{key}"), "is not valid UTF-8".to_owned())
                    }
                    _ => ("path".to_owned(), "cannot be read".to_owned()),
                };
                Err(ApiError::invalid(
                    format!("Invalid path: {path} {message}"),
                    vec![FieldError::new(path, message)],
                ))
            }
            Err(_) => Err(ApiError::bad_request("Invalid path")),
        }
    }
}

/// Parses a session id from a path segment.
pub(super) fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(raw).map_err(|e| ApiError::field("sessionId", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::api_words;

    #[test]
    fn serde_messages_are_put_in_the_apis_words() {
        assert_eq!(
            api_words("invalid type: sequence, expected struct Ack with 2 elements"),
            "invalid type: sequence, expected a JSON object with 2 elements"
        );
        assert_eq!(
            api_words("invalid type: string \"x\", expected u64"),
            "invalid type: string \"x\", expected a non-negative whole number"
        );
        assert_eq!(
            api_words("invalid value: integer `-1`, expected u32 at line 1"),
            "invalid value: integer `-1`, expected a non-negative whole number at line 1"
        );
        assert_eq!(
            api_words("unknown variant `x`, expected one of `pause`, `resume`"),
            "unknown variant `x`, expected one of `pause`, `resume`"
        );
        assert_eq!(api_words("expected a string"), "expected a string");
    }
}
