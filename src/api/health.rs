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
    let connected = store.health().await.map(|h| h.connected).unwrap_or(false);
    let shared = state.shared();
    json(
        StatusCode::OK,
        &json!({
            "status": if connected { "ok" } else { "degraded" },
            "storage": store.backend(),
            "instanceId": shared.instance_id,
            "uptime": shared.started.elapsed().as_secs_f64(),
            "timestamp": state.now(),
            "websocket": {
                "clients": shared.ws_clients.load(std::sync::atomic::Ordering::Relaxed),
                "subscriptions": shared.bus.subscription_count(),
            },
        }),
    )
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
