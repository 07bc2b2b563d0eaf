//! The OpenAPI document, `GET /api/openapi.json`: assembled from the routes' own annotations
//! (`#[utoipa::path]` next to each handler, registered through `utoipa_axum::routes!`, so a
//! route cannot be added without its description), the stored models' schemas and
//! [`answers`], plus what the edge may answer on any route ([`edge_answers`]).
//!
//! The WebSocket's messages are described in `docs/websocket.md`; the document only names
//! the upgrade. Nothing here may handle a request other than serving the document, or
//! describe a route by hand.

pub(crate) mod answers;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder};

use crate::domain::ingest::MAX_BATCH;
use crate::domain::model::{EventType, ID_PATTERN, MAX_EPOCH_MS, MAX_STEP_NUMBER, YEAR_1970_ON};

/// The parts every operation shares: title, version, tags, the event schemas built from
/// the domain's own lists.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "afw — the ActionFlows backend",
        description = "Sessions, events, chains, commands and input for AI coding agents. \
            Every error is JSON `{\"error\": \"<sentence>\", ...details}`. Requests from \
            browsers are screened by Host and Origin; with API keys configured every route \
            except /health, /ready and the UI's files (/ui) needs one. The WebSocket \
            protocol (`GET /ws`) is described in docs/websocket.md.",
        license(name = "MIT"),
    ),
    tags(
        (name = "operations", description = "Health, readiness, metrics, this document"),
        (name = "sessions", description = "Sessions, their chains, awaiting input"),
        (name = "events", description = "Event ingestion and history"),
        (name = "commands", description = "Control commands for an agent: queue, claim, acknowledge"),
        (name = "input", description = "Text input for a waiting agent: queue, long-poll"),
        (name = "users", description = "Who has sessions"),
        (name = "history", description = "Archived sessions by UTC date (AFW_ARCHIVE)"),
        (name = "terminal", description = "Terminal output captured by the hooks"),
        (name = "websocket", description = "Live events (docs/websocket.md)"),
        (name = "ui", description = "The session management UI's own files (no data, no key)"),
    ),
)]
pub(crate) struct ApiDoc;

/// Completes the document assembled from the routes: the version, the error schema, the
/// edge's answers and the API-key schemes.
fn complete(doc: &mut utoipa::openapi::OpenApi) {
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let components = doc.components.get_or_insert_with(Default::default);
    let mut errors = Vec::new();
    <answers::ErrorBody as utoipa::ToSchema>::schemas(&mut errors);
    errors.push((
        "Error".into(),
        <answers::ErrorBody as utoipa::PartialSchema>::schema(),
    ));
    components.schemas.extend(errors);
    components.security_schemes.insert(
        "bearer".into(),
        RefOr::T(SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API key (AFW_API_KEY, AFW_API_KEYS), or the metrics key for /metrics",
                ))
                .build(),
        )),
    );
    components.security_schemes.insert(
        "apiKeyHeader".into(),
        RefOr::T(SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(
            "x-api-key",
        )))),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        let open = matches!(path.as_str(), "/health" | "/ready" | "/ui" | "/ui/{file}");
        for op in operations(item) {
            edge_answers(op, path, open);
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// What the edge (host and origin screening, keys, rate limits, size and time bounds) and
/// storage may answer on any route, added where the route's own annotation does not say.
fn edge_answers(op: &mut Operation, path: &str, open: bool) {
    let has_body = op.request_body.is_some();
    let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let mut add = |status: &str, why: &str, retry: bool| {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error_response(why, retry));
    };
    if has_body || has_params {
        add(
            "400",
            "Malformed JSON, a failed validation or a bad parameter (`details` names the fields)",
            false,
        );
    }
    if !open {
        add(
            "401",
            "No API key, or not a valid one (only when keys are configured)",
            false,
        );
    }
    add(
        "403",
        "The Host or Origin is not allowed (a browser page of another site)",
        false,
    );
    if has_body {
        add("408", "The request body did not arrive in time", false);
        add(
            "413",
            "The body (or one event) is larger than the limit (`limit`)",
            false,
        );
        add("415", "Content-Type is not application/json", false);
    }
    if !open && path != "/metrics" {
        add(
            "429",
            "Rate limited (Retry-After, RateLimit-* headers)",
            true,
        );
    }
    add(
        "503",
        "Storage is unavailable or the server is at its connection cap; nothing was stored",
        true,
    );
    if !open {
        op.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::default(),
            utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::new(
                "apiKeyHeader",
                Vec::<String>::new(),
            ),
        ]);
    }
}

fn error_response(description: &str, retry_after: bool) -> RefOr<utoipa::openapi::Response> {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Error")))
            .build(),
    );
    if retry_after {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                ))
                .description(Some("Seconds before a retry"))
                .build(),
        );
    }
    RefOr::T(response.build())
}

/// An event as a hook sends it: `type`, `sessionId` and `timestamp` required, `user` and
/// `eventId` strings, `stepNumber` 1..=10 000; every other field kept verbatim.
fn event_schema() -> RefOr<Schema> {
    let kinds: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    let string_or_null = || {
        ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
    };
    // Instants before 1970 are refused: nothing this service records happened then.
    let rfc3339 = ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::DateTime,
        )))
        .pattern(Some(YEAR_1970_ON));
    let millis = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(MAX_EPOCH_MS as f64))
        .description(Some("Milliseconds since the Unix epoch"));
    let step = ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Integer,
            Type::Null,
        ]))
        .minimum(Some(1))
        .maximum(Some(MAX_STEP_NUMBER as f64));
    ObjectBuilder::new()
        .description(Some(
            "An event. `type`, `sessionId` and `timestamp` are required; every other field \
             is stored and served verbatim; a client `seq` is dropped (`seq` is the server's). \
             An event for an unknown session creates it.",
        ))
        .property(
            "type",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(kinds)),
        )
        .required("type")
        .property(
            "sessionId",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(ID_PATTERN)),
        )
        .required("sessionId")
        .property("timestamp", OneOfBuilder::new().item(rfc3339).item(millis))
        .required("timestamp")
        .property("user", string_or_null())
        .property(
            "eventId",
            string_or_null().description(Some(
                "The client's id for the event: a retry with the same id stores nothing twice",
            )),
        )
        .property("stepNumber", step)
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(true),
        ))
        .into()
}

fn batch_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .property(
            "events",
            ArrayBuilder::new()
                .items(Ref::from_schema_name("Event"))
                .min_items(Some(1))
                .max_items(Some(MAX_BATCH)),
        )
        .required("events")
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ))
        .into()
}

/// An event as a hook sends it (request bodies of `POST /api/events` and, as items, of the
/// batch).
pub(crate) struct Event;

impl utoipa::PartialSchema for Event {
    fn schema() -> RefOr<Schema> {
        event_schema()
    }
}

impl utoipa::ToSchema for Event {}

/// `{events: [Event, ...]}`, 1 to 1000.
pub(crate) struct EventBatch;

impl utoipa::PartialSchema for EventBatch {
    fn schema() -> RefOr<Schema> {
        batch_schema()
    }
}

impl utoipa::ToSchema for EventBatch {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push(("Event".into(), event_schema()));
    }
}

/// Any JSON value but `null` (`input` of queued input).
pub(crate) struct AnyButNull;

impl utoipa::PartialSchema for AnyButNull {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::String,
                Type::Number,
                Type::Integer,
                Type::Boolean,
                Type::Array,
                Type::Object,
            ]))
            .description(Some("Any JSON value but null"))
            .into()
    }
}

impl utoipa::ToSchema for AnyButNull {}

/// A queued command, one shape per kind: `retry` and `skip` need `payload.stepNumber`,
/// `abort` needs `payload.reason` (the checks of `validate_payload` in `http::commands`).
pub(crate) fn command_schema() -> RefOr<Schema> {
    let id = || {
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::String,
                Type::Null,
            ]))
            .pattern(Some(ID_PATTERN))
    };
    let shape = |kinds: &[&str], payload: ObjectBuilder, required: bool| {
        let mut o = ObjectBuilder::new()
            .property(
                "type",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(kinds.to_vec())),
            )
            .required("type")
            .property("payload", payload)
            .property("id", id())
            .additional_properties(Some(
                utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
            ));
        if required {
            o = o.required("payload");
        }
        o
    };
    let free = ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::from_iter([
        Type::Object,
        Type::Null,
    ]));
    let step = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "stepNumber",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(MAX_STEP_NUMBER as f64)),
        )
        .required("stepNumber");
    let reason = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "reason",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("\\S")),
        )
        .required("reason");
    OneOfBuilder::new()
        .description(Some(
            "A command for the agent. `id` (or the Idempotency-Key header) makes a retry queue nothing again.",
        ))
        .item(shape(&["pause", "resume", "cancel"], free, false))
        .item(shape(&["retry", "skip"], step, true))
        .item(shape(&["abort"], reason, true))
        .into()
}

/// The document as served: assembled and serialised once per process (it depends on the
/// code alone, not on an instance's configuration).
fn document() -> Bytes {
    static DOCUMENT: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            let mut doc = crate::http::routes().into_openapi();
            complete(&mut doc);
            // Serialising a tree of strings and maps cannot fail; an empty object if it did.
            Bytes::from(doc.to_pretty_json().unwrap_or_else(|_| "{}".into()))
        })
        .clone()
}

#[utoipa::path(
    get,
    path = "/api/openapi.json", operation_id = "openapi",
    tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = Object)),
)]
pub(crate) async fn openapi_json() -> Response {
    let mut res = (StatusCode::OK, document()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
