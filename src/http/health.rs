//! `GET /health` and `GET /ready`: liveness and readiness, never behind auth.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use super::json;
use crate::http::AppState;
use crate::http::openapi::answers;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
}

#[utoipa::path(
    get, path = "/health", operation_id = "health", tag = "operations",
    responses((status = 200, description = "Alive (also when degraded)", body = answers::Health)),
)]
async fn health(State(state): State<AppState>) -> Response {
    let store = state.store();
    let health = store.health().await.unwrap_or_default();
    let shared = state.shared();
    let subscribed = shared.bridge.as_ref().is_none_or(|b| b.is_subscribed());
    let archiving = shared
        .archiver
        .as_ref()
        .map(|a| (a.archive().kind(), a.status(), a.pending()));
    let archive_ok = archiving.is_none_or(|(_, s, _)| !s.failing());
    let mut body = json!({
        "status": if health.is_ok() && subscribed && archive_ok { "ok" } else { "degraded" },
        "storage": store.backend(),
        "instanceId": shared.instance_id,
        "uptime": shared.started.elapsed().as_secs_f64(),
        "timestamp": state.now(),
        "websocket": {
            "clients": shared.ws_clients.load(std::sync::atomic::Ordering::Relaxed),
            "subscriptions": shared.bus.subscription_count(),
        },
    });
    if let Some(bridge) = &shared.bridge {
        body["redis"] = json!({
            "connected": health.connected,
            "writable": health.writable,
            "latencyMs": health.latency_ms,
            "pubsub": if bridge.is_subscribed() { "subscribed" } else { "reconnecting" },
        });
    }
    if let Some((kind, status, pending)) = archiving {
        body["archive"] = json!({
            "kind": kind,
            "state": if status.failing() { "retrying" } else { "ok" },
            "pending": pending,
            "lastError": status.last_error(),
        });
    }
    json(StatusCode::OK, &body)
}

#[utoipa::path(
    get, path = "/ready", operation_id = "ready", tag = "operations",
    responses(
        (status = 200, description = "Storage answers", body = answers::Ready),
        (status = 503, description = "Storage is unreachable, or the instance is shutting down (`error`)", body = answers::Ready,
            headers(("Retry-After" = u64, description = "Seconds"))),
    ),
)]
async fn ready(State(state): State<AppState>) -> Response {
    let backend = state.store().backend();
    if *state.shared().shutdown.borrow() {
        return not_ready(backend, "Not ready: shutting down");
    }
    let health = state.store().health().await.unwrap_or_default();
    if health.is_ok() {
        return json(
            StatusCode::OK,
            &json!({ "ready": true, "storage": backend }),
        );
    }
    let why = health.error.as_deref().unwrap_or("storage unreachable");
    not_ready(backend, &format!("Not ready: {why}"))
}

fn not_ready(backend: &str, error: &str) -> Response {
    let mut res = json(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({ "ready": false, "storage": backend, "error": error }),
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}
