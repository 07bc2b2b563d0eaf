//! Strict input and JSON-only errors: trailing bytes, undecodable paths, handshakes,
//! messages in the API's words, step numbers, WebSocket close codes.

use std::time::Duration;

use afw::config::Config;
use axum::http::{Method, StatusCode};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{TestApp, event};

#[tokio::test]
async fn trailing_bytes_after_the_json_body_are_a_400_on_every_route() {
    let app = TestApp::new();
    app.start_session("s").await;
    let cmd = app.queue_command("s", json!({"type": "pause"})).await;
    let ev = event("file:created", "s", json!({}));
    let routes: Vec<(Method, String, Value)> = vec![
        (Method::POST, "/api/sessions".into(), json!({"cwd": "/w"})),
        (
            Method::PUT,
            "/api/sessions/s".into(),
            json!({"summary": "x"}),
        ),
        (
            Method::POST,
            "/api/sessions/s/awaiting".into(),
            json!({"promptText": "?"}),
        ),
        (
            Method::POST,
            "/api/sessions/s/input".into(),
            json!({"input": "yes"}),
        ),
        (
            Method::POST,
            "/api/sessions/s/commands".into(),
            json!({"type": "pause"}),
        ),
        (
            Method::POST,
            "/api/commands/s/commands".into(),
            json!({"type": "pause"}),
        ),
        (
            Method::POST,
            format!("/api/commands/{cmd}/ack"),
            json!({"result": 1}),
        ),
        (Method::POST, "/api/events".into(), ev.clone()),
        (
            Method::POST,
            "/api/events/batch".into(),
            json!({"events": [ev]}),
        ),
        (
            Method::POST,
            "/api/terminal/s/output".into(),
            json!({"output": "x"}),
        ),
    ];
    for (method, path, body) in routes {
        for junk in ["garbage", "{}", " ]"] {
            let res = app
                .raw(
                    method.clone(),
                    &path,
                    Some("application/json"),
                    Some(format!("{body}{junk}")),
                )
                .await;
            assert_eq!(
                res.status,
                StatusCode::BAD_REQUEST,
                "{method} {path} {junk}"
            );
            assert!(res.body["error"].is_string(), "{}", res.body);
        }
        // Trailing whitespace is fine.
        let res = app
            .raw(
                method.clone(),
                &path,
                Some("application/json"),
                Some(format!("{body} \n")),
            )
            .await;
        assert!(
            res.status.is_success(),
            "{method} {path}: {} {}",
            res.status,
            res.body
        );
    }
    // Nothing of the refused requests was stored.
    let input = app.get("/api/sessions/s/input").await;
    assert_eq!(input.body["input"]["input"], "yes");
    assert_eq!(
        app.get("/api/sessions/s/input").await.body["available"],
        false
    );
}

#[tokio::test]
async fn an_undecodable_path_segment_is_a_json_400() {
    let app = TestApp::new();
    for path in [
        "/api/sessions/%FF",
        "/api/events/%C3%28",
        "/api/commands/%FF/ack",
        "/api/users/%FE/sessions",
    ] {
        let method = if path.ends_with("/ack") {
            Method::POST
        } else {
            Method::GET
        };
        let res = app.request(method, path, None).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            res.body["error"].as_str().unwrap().contains("UTF-8"),
            "{path}: {}",
            res.body
        );
        assert_eq!(res.headers["content-type"], "application/json");
    }
}

#[tokio::test]
async fn the_websocket_endpoint_without_an_upgrade_answers_json() {
    let app = TestApp::new();
    let res = app.get("/ws").await;
    assert!(res.status.is_client_error(), "{}", res.status);
    assert!(
        res.body["error"].as_str().unwrap().contains("WebSocket"),
        "{}",
        res.body
    );
    assert_eq!(res.headers["content-type"], "application/json");
    let res = app.request(Method::POST, "/ws", None).await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(res.body["error"].is_string());
}

#[tokio::test]
async fn messages_name_json_types_not_rust_types() {
    let app = TestApp::new();
    app.start_session("s").await;
    let cmd = app.queue_command("s", json!({"type": "pause"})).await;
    let cases = [
        (format!("/api/commands/{cmd}/ack"), json!([1, 2])),
        ("/api/sessions".to_owned(), json!({"cwd": 5})),
        (
            "/api/sessions/s/commands".to_owned(),
            json!({"type": "dance"}),
        ),
        (
            "/api/sessions/s/awaiting".to_owned(),
            json!({"quickResponses": "x"}),
        ),
    ];
    for (path, body) in cases {
        let res = app.post(&path, body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}");
        let text = res.body.to_string();
        for rust in ["struct", "enum ", "Vec<", "u64", "String", "Option"] {
            assert!(!text.contains(rust), "{path}: {text}");
        }
    }
}

#[tokio::test]
async fn step_numbers_must_be_one_to_ten_thousand() {
    let app = TestApp::new();
    app.start_session("s").await;
    for bad in [
        json!(-1),
        json!(0),
        json!(10_001),
        json!(18446744073709551615u64),
    ] {
        let ev = event("step:spawned", "s", json!({"stepNumber": bad}));
        let res = app.post("/api/events", ev).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(res.body["details"][0]["path"], "stepNumber");
        let res = app
            .post(
                "/api/sessions/s/commands",
                json!({"type": "retry", "payload": {"stepNumber": bad}}),
            )
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
        let res = app
            .post(
                "/api/terminal/s/output",
                json!({"output": "x", "stepNumber": bad}),
            )
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {}", res.body);
    }
    let ok = event("step:spawned", "s", json!({"stepNumber": 10_000}));
    assert_eq!(
        app.post("/api/events", ok).await.status,
        StatusCode::CREATED
    );
}

/// Writes one raw client frame after the handshake and returns the close code received.
async fn close_code_after(raw_frame: &[u8]) -> Option<u16> {
    let app = TestApp::serve(Config::default()).await;
    let mut ws = app.ws().await;
    let tcp = match ws.stream.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s,
        _ => unreachable!(),
    };
    tcp.write_all(raw_frame).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, ws.stream.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

#[tokio::test]
async fn websocket_protocol_errors_close_with_1002_and_bad_utf8_with_1007() {
    // A client frame must be masked: an unmasked one breaks the protocol.
    assert_eq!(
        close_code_after(&[0x81, 0x02, b'h', b'i']).await,
        Some(1002)
    );
    // Reserved bits set.
    assert_eq!(
        close_code_after(&[0xF1, 0x80, 0, 0, 0, 0]).await,
        Some(1002)
    );
    // A masked text frame (mask 0) whose payload is not UTF-8.
    assert_eq!(
        close_code_after(&[0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28]).await,
        Some(1007)
    );
}
