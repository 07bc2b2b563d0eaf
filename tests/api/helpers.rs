//! Test harness: one afw instance per test, on a fixed epoch and seed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use afw::app::{self, App, Ports};
use afw::config::Config;
use afw::http::AppState;
use afw::ports::{IdGen, TokioClock};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tower::ServiceExt;

/// 2026-11-20T14:00:00.000Z, the day of the fixture session.
pub const EPOCH_MS: u64 = 1_795_183_200_000;

static NEXT_SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("TEST_LOG").unwrap_or_default())
            .with_test_writer()
            .try_init();
    }
}

pub struct TestApp {
    pub router: axum::Router,
    pub state: AppState,
    pub addr: Option<SocketAddr>,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl TestApp {
    /// An in-process instance (no socket) with the default configuration.
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> Self {
        init_logs();
        let ports = Ports {
            clock: Arc::new(TokioClock::starting_at(EPOCH_MS)),
            // Distinct seeds: two instances must not generate the same ids.
            ids: Arc::new(IdGen::from_seed(
                7 + NEXT_SEED.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            )),
            connector: Arc::new(afw::ports::TcpConnector),
            archive: None,
        };
        let App { state, router } = app::build(config, ports).expect("build app");
        Self {
            router,
            state,
            addr: None,
        }
    }

    /// The same, also served on a real loopback socket (for WebSocket and long-poll tests).
    pub async fn serve(config: Config) -> Self {
        let mut test = Self::with_config(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        test.addr = Some(listener.local_addr().unwrap());
        // As in production (main.rs): no Nagle delay on small frames.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = App {
            state: test.state.clone(),
            router: test.router.clone(),
        };
        tokio::spawn(app.serve(listener, std::future::pending()));
        test
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let body = body.map(|b| b.to_string());
        self.raw(method, path, Some("application/json"), body).await
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<String>,
    ) -> Response {
        self.raw_with(method, path, content_type, &[], body).await
    }

    /// A JSON POST with extra request headers.
    pub async fn post_with(&self, path: &str, headers: &[(&str, &str)], body: Value) -> Response {
        let body = Some(body.to_string());
        self.raw_with(Method::POST, path, Some("application/json"), headers, body)
            .await
    }

    pub async fn raw_with(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Response {
        // As the real clients send it (AFW_BACKEND_URL defaults to http://localhost:3001).
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "localhost:3001");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req.body(Body::from(body.unwrap_or_default())).unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!("non-JSON body ({e}): {}", String::from_utf8_lossy(&bytes))
            })
        };
        Response {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(body)).await
    }

    /// Posts an event and asserts it was stored; returns its seq.
    pub async fn event(&self, event: Value) -> u64 {
        let res = self.post("/api/events", event).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        res.body["seq"].as_u64().unwrap()
    }

    /// Starts a session the way the session-start hook does.
    pub async fn start_session(&self, id: &str) {
        self.event(event(
            "session:started",
            id,
            serde_json::json!({"cwd": "/w"}),
        ))
        .await;
    }

    /// Queues a command and returns its id.
    pub async fn queue_command(&self, session: &str, command: Value) -> String {
        let res = self
            .post(&format!("/api/sessions/{session}/commands"), command)
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        res.body["commandId"].as_str().unwrap().to_owned()
    }

    pub async fn ws(&self) -> Ws {
        let url = format!("ws://{}/ws", self.addr.expect("served app"));
        let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut ws = Ws { stream };
        let hello = ws.next_json().await;
        assert_eq!(hello["type"], "subscription_confirmed");
        ws
    }
}

/// The realistic hook session of `tests/fixtures/hook-session.jsonl`, one event a line.
pub fn fixture() -> Vec<Value> {
    include_str!("../fixtures/hook-session.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn event(kind: &str, session: &str, extra: Value) -> Value {
    let mut ev = serde_json::json!({
        "type": kind,
        "sessionId": session,
        "timestamp": "2026-11-20T14:00:00.000Z",
    });
    if let Value::Object(extra) = extra {
        ev.as_object_mut().unwrap().extend(extra);
    }
    ev
}

pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    pub async fn send(&mut self, value: Value) {
        self.stream
            .send(Message::Text(value.to_string().into()))
            .await
            .unwrap();
    }

    /// The next message of any kind, within 5 s.
    pub async fn next_message(&mut self) -> Option<Message> {
        tokio::time::timeout(Duration::from_secs(5), self.stream.next())
            .await
            .expect("no WebSocket message within 5 s")
            .map(|m| m.expect("WebSocket error"))
    }

    /// The next text frame as JSON, skipping protocol pings.
    pub async fn next_json(&mut self) -> Value {
        loop {
            match self.next_message().await {
                Some(Message::Text(t)) => return serde_json::from_str(t.as_str()).unwrap(),
                Some(Message::Ping(_) | Message::Pong(_)) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Asserts nothing but pings arrives for a while.
    pub async fn expect_silence(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    pub async fn subscribe(&mut self, session: &str, after: Option<u64>) -> Value {
        let mut msg = serde_json::json!({ "type": "subscribe", "sessionId": session });
        if let Some(after) = after {
            msg["after"] = after.into();
        }
        self.send(msg).await;
        let confirm = self.next_json().await;
        assert_eq!(confirm["type"], "subscription_confirmed", "{confirm}");
        assert_eq!(confirm["sessionId"], session);
        confirm
    }

    /// Reads `n` event frames and returns their seqs.
    pub async fn event_seqs(&mut self, n: usize) -> Vec<u64> {
        let mut seqs = Vec::new();
        while seqs.len() < n {
            let frame = self.next_json().await;
            if let Some(seq) = event_seq(&frame) {
                seqs.push(seq);
            }
        }
        seqs
    }
}

/// The `seq` of an event frame (a stored event, sent as itself); `None` for the protocol's
/// own frames and for notices, which carry no `seq`.
pub fn event_seq(frame: &Value) -> Option<u64> {
    let kind = frame["type"].as_str()?;
    (afw::domain::model::EventType::parse(kind).is_some()).then(|| frame["seq"].as_u64())?
}

/// `GET path` through the router with extra headers, for answers that are not JSON:
/// status, headers and the body as text.
pub async fn get_text(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::get(path).header(header::HOST, "localhost:3001");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = app
        .router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// `GET /metrics` through the router: status and text.
pub async fn scrape(app: &TestApp, key: Option<&str>) -> (StatusCode, String) {
    let bearer = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    let (status, _, text) = get_text(app, "/metrics", &headers).await;
    (status, text)
}

/// The sum of every sample of `name` whose labels contain `labels` (`""`: all).
pub fn sample(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && rest.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Every family `/metrics` carries once it has samples (a labelled family without any is
/// left out, as Prometheus allows).
pub const FAMILIES: &[&str] = &[
    "afw_http_requests_total",
    "afw_http_request_duration_seconds",
    "afw_http_refused_total",
    "afw_http_rate_limited_total",
    "afw_ws_clients",
    "afw_ws_subscriptions",
    "afw_ws_frames_total",
    "afw_ws_disconnects_total",
    "afw_ws_gaps_repaired_total",
    "afw_ws_resyncs_total",
    "afw_events_stored_total",
    "afw_events_duplicate_total",
    "afw_events_broadcast_total",
    "afw_queue_length",
    "afw_pubsub_resubscribes_total",
];

#[allow(dead_code)] // used by tests/redis
/// The families of Redis mode only: the link's, the bridge's and Redis's own figures.
pub const REDIS_FAMILIES: &[&str] = &[
    "afw_redis_command_duration_seconds",
    "afw_pubsub_messages_total",
    "afw_redis_used_memory_bytes",
    "afw_redis_connected_clients",
    "afw_redis_pubsub_channels",
    "afw_redis_pubsub_patterns",
    "afw_redis_expired_keys_total",
    "afw_redis_evicted_keys_total",
    "afw_redis_keyspace_hits_total",
    "afw_redis_keyspace_misses_total",
];

/// Asserts that `text` has every family of `families`.
pub fn has_families(text: &str, families: &[&str]) {
    for family in families {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
}

/// Every `.rs` file under `dir`, recursively (the tests that read `src/` as text).
pub fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
