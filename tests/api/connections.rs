//! Connections that cannot pin the server: timeouts, the connection cap, early 413s and
//! JSON for hyper's own error answers. Real sockets, short timeouts.

use std::time::Duration;

use afw::config::Config;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

fn short_timeouts() -> Config {
    Config {
        header_timeout_secs: 1,
        body_timeout_secs: 1,
        idle_timeout_secs: 1,
        ..Config::default()
    }
}

/// Reads until the server closes the connection (or `within` passes: then `None`).
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status and the JSON body of a raw HTTP/1.1 answer.
fn parse(answer: &str) -> (u16, Value) {
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn health_answers(app: &TestApp) {
    let mut s = TcpStream::connect(app.addr.unwrap()).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
    assert_eq!(parse(&answer).0, 200, "{answer}");
}

#[tokio::test]
async fn slow_headers_are_cut_off_while_health_answers() {
    let app = TestApp::serve(Config {
        idle_timeout_secs: 30,
        ..short_timeouts()
    })
    .await;
    let mut slow = TcpStream::connect(app.addr.unwrap()).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHo").await.unwrap();
    health_answers(&app).await;
    let got = read_to_close(&mut slow, Duration::from_secs(5)).await;
    assert_eq!(
        got.as_deref(),
        Some(""),
        "closed by the header timeout, unanswered"
    );
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let app = TestApp::serve(short_timeouts()).await;
    // One that never sends a byte, and one kept alive after its request.
    let mut silent = TcpStream::connect(app.addr.unwrap()).await.unwrap();
    let mut kept = TcpStream::connect(app.addr.unwrap()).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    health_answers(&app).await;
    assert!(
        read_to_close(&mut silent, Duration::from_secs(5))
            .await
            .is_some()
    );
    let answer = read_to_close(&mut kept, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(parse(&answer).0, 200, "answered, then closed when idle");
}

#[tokio::test]
async fn a_request_in_flight_is_not_idle() {
    let app = TestApp::serve(short_timeouts()).await;
    app.start_session("s").await;
    let mut poll = TcpStream::connect(app.addr.unwrap()).await.unwrap();
    poll.write_all(
        b"GET /api/sessions/s/input?timeout=2500 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = read_to_close(&mut poll, Duration::from_secs(10))
        .await
        .unwrap();
    let (status, body) = parse(&answer);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        body["timedOut"], true,
        "the long poll ran to its own timeout"
    );
}

#[tokio::test]
async fn an_unsent_body_gets_408_and_the_connection_closes() {
    let app = TestApp::serve(short_timeouts()).await;
    let mut s = TcpStream::connect(app.addr.unwrap()).await.unwrap();
    s.write_all(
        b"POST /api/sessions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"cwd\":",
    )
    .await
    .unwrap();
    let answer = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
    let (status, body) = parse(&answer);
    assert_eq!(status, 408, "{answer}");
    assert!(body["error"].as_str().unwrap().contains("did not arrive"));
    health_answers(&app).await;
}

#[tokio::test]
async fn an_oversized_content_length_is_413_at_once_even_with_expect_continue() {
    let app = TestApp::serve(Config::default()).await;
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut s = TcpStream::connect(app.addr.unwrap()).await.unwrap();
        let head = format!(
            "POST /api/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{expect}Content-Length: 1000000000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answered without the body")
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 413"), "{expect:?}: {answer}");
        assert!(!answer.contains("100 Continue"));
        assert!(answer.contains("\"limit\":2097152"), "{answer}");
    }
}

#[tokio::test]
async fn hypers_own_error_answers_are_json() {
    let app = TestApp::serve(Config::default()).await;
    let huge = format!(
        "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let cases: [(&[u8], u16); 3] = [
        (huge.as_bytes(), 431),
        (b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (b"\x01\x02 nonsense\r\n\r\n", 400),
    ];
    for (request, want) in cases {
        let mut s = TcpStream::connect(app.addr.unwrap()).await.unwrap();
        let _ = s.write_all(request).await;
        let answer = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
        let (status, body) = parse(&answer);
        assert_eq!(status, want, "{answer}");
        assert!(body["error"].is_string(), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-type: application/json")
        );
    }
}

#[tokio::test]
async fn beyond_the_connection_cap_new_connections_get_503_and_health_answers() {
    let app = TestApp::serve(Config {
        max_connections: 3,
        ..Config::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(app.addr.unwrap()).await.unwrap());
    }
    // The accept loop sees them in order; give it a moment to take all three.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut s = TcpStream::connect(app.addr.unwrap()).await.unwrap();
    s.write_all(b"GET /api/sessions HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut s, Duration::from_secs(10))
        .await
        .unwrap();
    let (status, body) = parse(&answer);
    assert_eq!(status, 503, "{answer}");
    assert!(body["error"].as_str().unwrap().contains("connection limit"));
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"));
    health_answers(&app).await;
    // Slots free up as connections close.
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let res = raw_get(&app, "/api/sessions").await;
    assert_eq!(res, 200);
}

async fn raw_get(app: &TestApp, path: &str) -> u16 {
    let mut s = TcpStream::connect(app.addr.unwrap()).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    parse(&read_to_close(&mut s, Duration::from_secs(5)).await.unwrap()).0
}
