//! The WebSocket endpoint `/ws` (contract §3): subscriptions, resume, input, heartbeat, limits.
//!
//! One task per client owns its socket. It receives stored events and notices from the
//! [`Bus`](crate::bus::Bus) through a bounded inbox and keeps, per subscribed session, the
//! last `seq` it sent: an event at or below it is a duplicate and is dropped, an event past
//! the next one reveals a gap that is filled from storage first. That one rule makes resume
//! (`after`), re-subscription and any publisher that delivers twice or skips (the Redis bridge)
//! exactly-once and in order. The task is generic over the socket so tests and the
//! simulation can drive it over any transport.
//!
//! Here: the route, the upgrade (refusals as JSON) and the close codes; [`conn`] runs a
//! connection, [`protocol`] reads what a client sends. Nothing in this module may touch a
//! socket after the upgrade.

mod conn;
mod protocol;

pub(crate) use conn::run;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::response::Response;
use serde_json::json;

use crate::http::AppState;
use crate::http::openapi::answers::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Close codes used by the server.
pub(crate) mod close {
    pub(crate) const GOING_AWAY: u16 = 1001;
    pub(crate) const PROTOCOL: u16 = 1002;
    pub(crate) const INVALID_DATA: u16 = 1007;
    pub(crate) const POLICY: u16 = 1008;
    pub(crate) const TOO_BIG: u16 = 1009;
    pub(crate) const TRY_AGAIN_LATER: u16 = 1013;
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

#[utoipa::path(
    get, path = "/ws", operation_id = "websocket", tag = "websocket",
    params(("apiKey" = Option<String>, Query, description = "An API key, for browsers that cannot set headers on the upgrade")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol (messages and close codes: docs/websocket.md)"),
        (status = 400, description = "Not a WebSocket upgrade", body = ErrorBody),
        (status = 426, description = "Upgrade required: a WebSocket handshake is expected", body = ErrorBody),
    ),
)]
async fn upgrade(
    State(state): State<AppState>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // A plain GET, or a handshake that is not a valid WebSocket upgrade: JSON, like every
    // other error (axum's own rejection is plain text).
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return upgrade_refused(&rejection),
    };
    // The spec's limit is enforced in `Conn::handle`, which can answer with an error frame
    // and a clean 1009. tungstenite's own cap sits above it and only stops abuse: past it
    // the socket is dropped without ceremony.
    let hard_cap = state
        .config()
        .ws_max_message_bytes
        .saturating_mul(2)
        .max(64 * 1024);
    ws.max_message_size(hard_cap)
        .max_frame_size(hard_cap)
        // Buffers grow on demand; small initial ones keep 10 000 idle clients cheap.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| run(socket, state))
}

fn upgrade_refused(rejection: &WebSocketUpgradeRejection) -> Response {
    use axum::extract::ws::rejection::WebSocketUpgradeRejection as R;
    let message = match rejection {
        R::MethodNotGet(_) => "The WebSocket upgrade must be a GET",
        R::MethodNotConnect(_) => "The WebSocket upgrade must be a CONNECT (HTTP/2)",
        R::InvalidConnectionHeader(_) | R::InvalidUpgradeHeader(_) => {
            "This is the WebSocket endpoint: connect with a WebSocket client (Connection: Upgrade, Upgrade: websocket)"
        }
        R::InvalidWebSocketVersionHeader(_) => "Only WebSocket version 13 is supported",
        R::WebSocketKeyHeaderMissing(_) => "The Sec-WebSocket-Key header is missing",
        R::InvalidProtocolPseudoheader(_) => "Invalid :protocol pseudo-header",
        R::ConnectionNotUpgradable(_) => "This connection cannot be upgraded to a WebSocket",
        _ => "Invalid WebSocket upgrade request",
    };
    let mut res = crate::http::json(rejection.status(), &json!({ "error": message }));
    if rejection.status() == axum::http::StatusCode::UPGRADE_REQUIRED {
        res.headers_mut().insert(
            axum::http::header::UPGRADE,
            axum::http::HeaderValue::from_static("websocket"),
        );
    }
    res
}
