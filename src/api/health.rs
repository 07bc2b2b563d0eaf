//! `GET /health` and `GET /ready`: liveness and readiness, never behind auth.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use super::json;
use crate::app::AppState;

pub fn router() -> Router<AppState> {
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
        "status": if health.connected && subscribed { "ok" } else { "degraded" },
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
            "latencyMs": health.latency_ms,
            "pubsub": if bridge.is_subscribed() { "subscribed" } else { "reconnecting" },
        });
    }
    json(StatusCode::OK, &body)
}

async fn ready(State(state): State<AppState>) -> Response {
    let connected = state
        .store()
        .health()
        .await
        .map(|h| h.connected)
        .unwrap_or(false);
    let status = if connected {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        &json!({ "ready": connected, "storage": state.store().backend() }),
    )
}
