//! Operations: `/metrics` (memory mode; Redis mode in `tests/redis/operations.rs`), request
//! ids, the drain on shutdown (in process and as the real binary on SIGTERM), and the
//! start-up refusal of an invalid `RUST_LOG`.

use std::io::{Read, Write};
use std::time::Duration;

use afw::app::App;
use afw::config::Config;
use axum::http::{Method, StatusCode};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{FAMILIES, TestApp, event, has_families, sample, scrape};

#[tokio::test]
async fn metrics_count_requests_events_frames_queues_and_refusals() {
    let app = TestApp::serve(Config {
        rate_limit_writes: 1,
        rate_limit_burst_secs: 1,
        ..Config::default()
    })
    .await;
    let (status, before) = scrape(&app, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut ws = app.ws().await;
    ws.subscribe("m1", None).await;
    let ev = event(
        "session:started",
        "m1",
        json!({"cwd": "/w", "eventId": "e1"}),
    );
    app.event(ev.clone()).await;
    assert_eq!(app.post("/api/events", ev).await.status, StatusCode::OK);
    ws.event_seqs(1).await;
    let input = json!({"input": "yes"});
    let res = app.post("/api/sessions/m1/input", input.clone()).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let res = app.post("/api/sessions/m1/input", input).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{}", res.body);
    app.get("/api/sessions/m1/commands").await;
    app.get("/api/sessions/nope").await;

    let (_, after) = scrape(&app, None).await;
    let moved = |name: &str, labels: &str, by: f64| {
        let (a, b) = (sample(&before, name, labels), sample(&after, name, labels));
        assert!(
            b - a >= by,
            "{name}{{{labels}}}: {a} -> {b}, expected +{by}"
        );
    };
    moved("afw_events_stored_total", "", 1.0);
    moved("afw_events_duplicate_total", "", 1.0);
    moved("afw_events_broadcast_total", "", 1.0);
    moved(
        "afw_http_requests_total",
        r#"route="/api/events",status="201""#,
        1.0,
    );
    moved(
        "afw_http_requests_total",
        r#"route="/api/sessions/{id}",status="404""#,
        1.0,
    );
    moved(
        "afw_http_request_duration_seconds_count",
        r#"route="/api/events""#,
        2.0,
    );
    moved(
        "afw_http_requests_total",
        r#"route="/ws",status="101""#,
        1.0,
    );
    moved("afw_http_refused_total", r#"reason="rate_limited""#, 1.0);
    moved("afw_http_rate_limited_total", "", 1.0);
    moved("afw_ws_frames_total", r#"direction="out""#, 3.0);
    moved("afw_ws_frames_total", r#"direction="in""#, 1.0);
    moved("afw_queue_length_count", r#"queue="input""#, 1.0);
    moved("afw_queue_length_count", r#"queue="commands""#, 1.0);
    assert_eq!(sample(&after, "afw_ws_clients", ""), 1.0);
    assert_eq!(sample(&after, "afw_ws_subscriptions", ""), 1.0);
    // Memory mode: no Redis figures.
    assert!(!after.contains("afw_redis_used_memory_bytes"));

    futures_util::SinkExt::close(&mut ws.stream).await.unwrap();
    for _ in 0..100 {
        let (_, text) = scrape(&app, None).await;
        if sample(&text, "afw_ws_disconnects_total", r#"reason="gone""#) >= 1.0 {
            assert_eq!(sample(&text, "afw_ws_clients", ""), 0.0);
            has_families(&text, FAMILIES);
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the closed WebSocket was not counted as a disconnect");
}

#[tokio::test]
async fn the_metrics_key_guards_metrics_and_nothing_else() {
    // Open without a key, even when the API needs keys.
    let app = TestApp::with_config(Config {
        api_key: Some(afw::config::Secret("api".into())),
        ..Config::default()
    });
    assert_eq!(scrape(&app, None).await.0, StatusCode::OK);
    let app = TestApp::with_config(Config {
        metrics_key: Some(afw::config::Secret("scrape-me".into())),
        ..Config::default()
    });
    assert_eq!(scrape(&app, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        scrape(&app, Some("wrong")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, text) = scrape(&app, Some("scrape-me")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("afw_http_requests_total"));
    // The metrics key is not an API key, and the API stays open without one.
    let res = app
        .raw_with(
            Method::GET,
            "/api/sessions",
            None,
            &[("authorization", "Bearer scrape-me")],
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    // A hostile page cannot read it either: the origin rules come first.
    let res = app
        .raw_with(
            Method::GET,
            "/metrics",
            None,
            &[("origin", "https://evil.example")],
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_request_id_is_kept_when_well_formed_else_drawn_and_always_returned() {
    let app = TestApp::new();
    let res = app
        .raw_with(
            Method::GET,
            "/api/sessions",
            None,
            &[("x-request-id", "trace-42.a:b_c")],
            None,
        )
        .await;
    assert_eq!(res.headers["x-request-id"], "trace-42.a:b_c");
    for bad in ["has space", &"x".repeat(129), "quote\"d"] {
        let res = app
            .raw_with(
                Method::GET,
                "/api/sessions",
                None,
                &[("x-request-id", bad)],
                None,
            )
            .await;
        let id = res.headers["x-request-id"].to_str().unwrap();
        assert_ne!(id, bad);
        assert_eq!(id.len(), 16, "{id}");
    }
    // Errors and refusals carry one too, and two requests never share one.
    let a = app.get("/nowhere").await;
    let b = app
        .raw_with(
            Method::GET,
            "/api/sessions",
            None,
            &[("origin", "https://evil.example")],
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(b.status, StatusCode::FORBIDDEN);
    assert_ne!(a.headers["x-request-id"], b.headers["x-request-id"]);
}

/// Sends `head` and then `rest` (after `pause`) on a fresh connection and reads the whole
/// answer (the request says `Connection: close`): `(status, body as JSON)`.
async fn http(
    addr: std::net::SocketAddr,
    head: String,
    rest: Vec<u8>,
    pause: Duration,
) -> (u16, Value) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    if !rest.is_empty() {
        tokio::time::sleep(pause).await;
        tcp.write_all(&rest).await.unwrap();
    }
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: localhost:3001\r\nconnection: close\r\n\r\n")
}

#[tokio::test]
async fn a_drain_answers_long_polls_finishes_writes_and_closes_websockets_with_1001() {
    let mut test = TestApp::with_config(Config {
        shutdown_grace_secs: 5,
        ..Config::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    test.addr = Some(addr);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = App {
        state: test.state.clone(),
        router: test.router.clone(),
    };
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    test.start_session("d1").await;
    let mut ws = test.ws().await;
    ws.subscribe("d1", None).await;
    let poll = tokio::spawn(http(
        addr,
        get("/api/sessions/d1/input?timeout=30000"),
        Vec::new(),
        Duration::ZERO,
    ));
    // A write whose body is still on its way when the drain begins.
    let body = event(
        "step:spawned",
        "d1",
        json!({"chainId": "c", "stepNumber": 1}),
    )
    .to_string();
    let (first, second) = body.as_bytes().split_at(body.len() / 2);
    let head = format!(
        "POST /api/events HTTP/1.1\r\nhost: localhost:3001\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{}",
        body.len(),
        String::from_utf8_lossy(first)
    );
    let write = tokio::spawn(http(
        addr,
        head,
        second.to_vec(),
        Duration::from_millis(400),
    ));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let began = std::time::Instant::now();
    stop.send(()).unwrap();

    let (status, answer) = poll.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(answer["available"], false, "{answer}");
    assert_eq!(answer["shuttingDown"], true, "{answer}");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    let ready = test.get("/ready").await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.body
    );
    assert_eq!(ready.body["error"], "Not ready: shutting down");
    let close = loop {
        match ws.stream.next().await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.expect("a close frame").code), 1001);
    let (status, answer) = write.await.unwrap();
    assert_eq!(status, 201, "{answer}");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops within its grace period")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    // The write in flight was stored.
    let events = test.get("/api/events/d1").await;
    assert_eq!(events.body["events"].as_array().unwrap().len(), 2);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn blocking_get(port: u16, path: &str) -> Option<String> {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    tcp.write_all(get(path).as_bytes()).ok()?;
    let mut out = String::new();
    tcp.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Waits (20 s at most) until a binary started on `port` answers `/health`.
fn wait_started(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while blocking_get(port, "/health").is_none_or(|r| !r.starts_with("HTTP/1.1 200")) {
        assert!(std::time::Instant::now() < deadline, "afw did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_binary_drains_on_sigterm_and_exits_0() {
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_afw"))
        .env_clear()
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_started(port);
    let poll = std::thread::spawn(move || {
        blocking_get(port, "/api/sessions/bin-1/input?timeout=60000").unwrap_or_default()
    });
    std::thread::sleep(Duration::from_millis(300));
    let began = std::time::Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let answer = poll.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""available":false"#), "{answer}");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "afw exited with {status}");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
}

#[test]
fn an_invalid_log_filter_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_afw"))
        .env_clear()
        .env("PORT", free_port().to_string())
        .env("RUST_LOG", "afw=loud")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a valid log filter"), "{stderr}");
}

/// Runs the binary in one log format, sends one request with a request id and returns the
/// lines it logged about that id.
fn request_log_lines(format: &str) -> Vec<String> {
    let port = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_afw"))
        .env_clear()
        .env("PORT", port.to_string())
        .env("RUST_LOG", "info")
        .env("AFW_LOG_FORMAT", format)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_started(port);
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(
        b"GET /api/sessions/s-log-1 HTTP/1.1\r\nhost: 127.0.0.1\r\nx-request-id: log-req-1\r\n\
          connection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains("/health"),
        "probes log at debug, not info: {text}"
    );
    text.lines()
        .filter(|l| l.contains("log-req-1"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_binary_logs_one_plain_line_per_request() {
    let lines = request_log_lines("pretty");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    let (stamp, rest) = line.split_at(27);
    assert!(
        stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{line}"
    );
    let rest = rest
        .strip_prefix("  INFO request{id=log-req-1}: afw::request: ")
        .unwrap_or_else(|| panic!("{line}"));
    let fields: Vec<&str> = rest.split(' ').collect();
    assert_eq!(fields.len(), 6, "{line}");
    assert_eq!(
        fields[..3],
        ["method=GET", "route=/api/sessions/{id}", "status=404"]
    );
    let latency = fields[3].strip_prefix("latency_us=").unwrap();
    assert!(latency.parse::<u64>().is_ok(), "{line}");
    assert_eq!(fields[4..], ["request_id=log-req-1", "session=s-log-1"]);
}

#[test]
fn the_binary_logs_one_json_object_per_request() {
    let lines = request_log_lines("json");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["target"], "afw::request");
    assert_eq!(line["span"]["id"], "log-req-1");
    let fields = &line["fields"];
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["route"], "/api/sessions/{id}");
    assert_eq!(fields["status"], 404);
    assert!(fields["latency_us"].is_u64(), "{line}");
    assert_eq!(fields["request_id"], "log-req-1");
    assert_eq!(fields["session"], "s-log-1");
    assert!(fields.get("message").is_none(), "{line}");
}
