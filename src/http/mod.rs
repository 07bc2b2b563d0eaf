//! The driving HTTP adapter: every route of contract §2 and the WebSocket of §3, behind the
//! edge (host and origin screening, CORS, API keys, rate limits, size and time bounds).
//!
//! [`router`] assembles it once per instance over an [`AppState`]; one module per resource,
//! each exposing `router()`; errors become responses in [`error`] only. Handlers speak to
//! the [`Store`] port and the [`Bus`], never to a backend; nothing here may know Redis or
//! build an instance (that is [`crate::app`]).

mod actions;
mod commands;
pub(crate) mod cors;
pub(crate) mod error;
mod events;
mod extract;
pub(crate) mod guard;
mod health;
mod history;
mod input;
pub(crate) mod observe;
pub(crate) mod openapi;
mod respond;
mod scrape;
mod sessions;
mod terminal;
mod ui;
mod users;
pub(crate) mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::sync::watch;

use crate::bus::Bus;
use crate::config::Config;
use crate::domain::model::Timestamp;
use crate::metrics::Metrics;
use crate::ports::{Clock, IdGen};
use crate::storage::Store;
use crate::storage::redis::bridge::BridgeStatus;
use cors::BrowserCorsLayer;
use error::ApiError;
use extract::{ApiJson, ApiQuery, JsonText, OptionalJson, Path, from_json, session_id};
use guard::{GateLayer, Guard, Step};
use respond::{json, json_array, raw_json, serialize_within};

/// Shared by every handler and connection task of one instance.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) bus: Arc<Bus>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Arc<IdGen>,
    pub(crate) instance_id: String,
    pub(crate) started: tokio::time::Instant,
    pub(crate) ws_clients: AtomicUsize,
    pub(crate) next_client_id: AtomicU64,
    /// Flips to `true` when the instance shuts down; WS tasks close with 1001.
    pub(crate) shutdown: watch::Sender<bool>,
    /// The Pub/Sub bridge, in Redis mode.
    pub(crate) bridge: Option<Arc<BridgeStatus>>,
    /// Origins, hosts, keys and rate limits.
    pub(crate) guard: Guard,
    /// This instance's counters.
    pub(crate) metrics: Arc<Metrics>,
    /// Files ended sessions in the archive (`AFW_ARCHIVE`), unless it is off.
    pub(crate) archiver: Option<Arc<crate::archive::archiver::Archiver>>,
}

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub(crate) fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn store(&self) -> &dyn Store {
        self.0.store.as_ref()
    }

    pub(crate) fn now(&self) -> Timestamp {
        Timestamp(self.0.clock.now_ms())
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.0
    }

    /// Whether requests need an API key (`AFW_API_KEY`/`AFW_API_KEYS` set).
    pub fn requires_keys(&self) -> bool {
        self.0.guard.keys.enabled()
    }

    /// Appends events through the store, counting what was stored and what was a
    /// duplicate; a `session:ended` among them, or any event of a session archived from
    /// here before, has the session archived.
    pub(crate) async fn append_events(
        &self,
        sid: &crate::domain::model::SessionId,
        events: Vec<crate::domain::model::NewEvent>,
    ) -> Result<Vec<crate::storage::Appended>, crate::storage::StoreError> {
        let ends = events
            .iter()
            .any(|e| e.kind == crate::domain::model::EventType::SessionEnded);
        let outcomes = self.store().append_events(sid, events).await?;
        let archived = || {
            self.0
                .archiver
                .as_ref()
                .is_some_and(|a| a.was_archived(sid))
        };
        if ends || archived() {
            self.request_archive(sid).await;
        }
        let duplicates = outcomes.iter().filter(|o| o.duplicate).count() as u64;
        let data = &self.0.metrics.data;
        data.events_duplicate.inc_by(duplicates);
        data.events_stored
            .inc_by(outcomes.len() as u64 - duplicates);
        Ok(outcomes)
    }

    /// Notes a queue's length: the input queue after a push, the commands a claim took.
    pub(crate) fn observe_queue(&self, queue: &'static str, length: usize) {
        let labels = crate::metrics::QueueLabels { queue };
        let histogram = self.0.metrics.data.queue_length.get_or_create(&labels);
        histogram.observe(length as f64);
    }

    /// This instance's counters (the simulation compares them with what clients saw).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    /// Asks for a session to be archived (it ended, or changed after it was archived).
    pub(crate) async fn request_archive(&self, session: &crate::domain::model::SessionId) {
        if let Some(archiver) = &self.0.archiver {
            archiver.request(self.store(), session).await;
        }
    }

    /// The archiver, unless `AFW_ARCHIVE=off`.
    pub fn archiver(&self) -> Option<&Arc<crate::archive::archiver::Archiver>> {
        self.0.archiver.as_ref()
    }

    /// This instance's id (`AFW_INSTANCE_ID`, else drawn at start).
    pub fn instance_id(&self) -> &str {
        &self.0.instance_id
    }
}

/// The whole HTTP side of one instance: the routes and the WebSocket, wrapped by the edge.
pub(crate) fn router(state: &AppState) -> Router {
    let api = Router::from(routes())
        .route_layer(observe::TagLayer)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config().max_body_bytes))
        .with_state(state.clone());
    let shared = state.shared();
    // The edge (screen: host, origin → CORS → admit: key, rate, size) wraps the whole
    // router once, not each route: every request passes it, and a per-route layer would be
    // cloned with every route on every request.
    let edge = tower::ServiceBuilder::new()
        .layer(GateLayer(state.clone(), Step::Screen))
        .layer(BrowserCorsLayer::allowed_origins())
        .layer(GateLayer(state.clone(), Step::Admit))
        .service(api);
    if state.config().observe_off {
        return Router::new().fallback_service(edge);
    }
    // Outside the edge, so refusals are logged, counted and carry a request id too.
    let trace = tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(observe::RequestSpan)
        .on_request(())
        .on_response(observe::LogLine)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(());
    let observed = tower::ServiceBuilder::new()
        .map_request(observe::request_ids)
        .layer(tower_http::request_id::SetRequestIdLayer::new(
            observe::REQUEST_ID,
            observe::DrawIds(Arc::clone(&shared.ids)),
        ))
        .layer(trace)
        .layer(tower_http::request_id::PropagateRequestIdLayer::new(
            observe::REQUEST_ID,
        ))
        .layer(observe::ObserveLayer(Arc::clone(&shared.metrics)))
        .service(edge);
    Router::new().fallback_service(observed)
}

/// Every route with its description: the router and the OpenAPI document
/// ([`openapi::document`]) come from this one list, so neither can have a route the other
/// lacks.
pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa::OpenApi as _;
    utoipa_axum::router::OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(health::router())
        .merge(scrape::router())
        .merge(sessions::router())
        .merge(events::router())
        .merge(commands::router())
        .merge(input::router())
        .merge(users::router())
        .merge(history::router())
        .merge(terminal::router())
        .merge(ws::router())
        .merge(ui::router())
        .routes(utoipa_axum::routes!(openapi::openapi_json))
}

/// Fallback for unknown routes: JSON, never HTML.
pub(crate) async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("No route for {method} {}", uri.path()))
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
