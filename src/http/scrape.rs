//! `GET /metrics`: this instance's counters in the Prometheus text format.
//!
//! Who may read it is the guard's decision (open, or `AFW_METRICS_KEY`). The live gauges
//! (WebSocket clients, subscriptions) are read from their owners here; nothing here may
//! call storage or Redis (Redis's figures come from their own timer).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(scrape))
}

#[utoipa::path(
    get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses(
        (status = 200, description = "This instance's counters, Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "AFW_METRICS_KEY is set and was not sent", body = crate::http::openapi::answers::ErrorBody),
    ),
)]
async fn scrape(State(state): State<AppState>) -> Response {
    let shared = state.shared();
    let metrics = &shared.metrics;
    let clients = shared.ws_clients.load(std::sync::atomic::Ordering::Relaxed);
    metrics.ws.clients.set(clients as i64);
    let subscriptions = shared.bus.subscription_count();
    metrics.ws.subscriptions.set(subscriptions as i64);
    let mut res = (StatusCode::OK, metrics.render()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    res
}
