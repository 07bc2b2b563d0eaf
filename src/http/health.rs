//! `GET /health` and `GET /ready`: liveness and readiness, never behind auth.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use super::json;
use crate::http::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

async fn health(State(state): State<AppState>) -> Response {
    let store = state.store();
    let health = store.health().await.unwrap_or_default();
    let shared = state.shared();
    let subscribed = shared.bridge.as_ref().is_none_or(|b| b.is_subscribed());
    let mut body = json!({
        "status": if health.is_ok() && subscribed { "ok" } else { "degraded" },
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
    json(StatusCode::OK, &body)
}

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
