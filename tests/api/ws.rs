use std::time::Duration;

use afw::config::Config;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::{TestApp, event};

#[tokio::test]
async fn subscribers_receive_each_event_as_itself_in_order() {
    let app = TestApp::serve(Config::default()).await;
    let mut ws = app.ws().await;
    // Subscribing to a session that does not exist yet is allowed.
    let confirm = ws.subscribe("s", None).await;
    assert_eq!(confirm["payload"]["lastSeq"], 0);
    assert!(confirm["payload"].get("recovered").is_none());
    app.event(event("session:started", "s", json!({"cwd": "/w"})))
        .await;
    app.event(event("file:created", "s", json!({"path": "/w/a"})))
        .await;
    app.event(event("file:created", "other", json!({}))).await;
    let first = ws.next_json().await;
    // The frame is the stored event itself (contract §3), plus the session as `data`.
    assert_eq!(first["type"], "session:started");
    assert_eq!(first["sessionId"], "s");
    assert_eq!(first["seq"], 1);
    assert_eq!(first["timestamp"], "2026-11-20T14:00:00.000Z");
    assert_eq!(first["cwd"], "/w");
    assert!(first.get("payload").is_none(), "{first}");
    assert_eq!(first["data"]["id"], "s");
    assert_eq!(first["data"]["cwd"], "/w");
    assert_eq!(first["data"]["status"], "in_progress");
    assert_eq!(ws.event_seqs(1).await, [2]);
    ws.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn every_subscriber_gets_each_event_exactly_once() {
    let app = TestApp::serve(Config::default()).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut ws = app.ws().await;
        ws.subscribe("s", None).await;
        clients.push(ws);
    }
    for _ in 0..20 {
        app.event(event("file:modified", "s", json!({}))).await;
    }
    for ws in &mut clients {
        assert_eq!(ws.event_seqs(20).await, (1..=20).collect::<Vec<_>>());
        ws.expect_silence(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn resume_with_after_replays_without_gap_or_duplicate_then_goes_live() {
    let app = std::sync::Arc::new(TestApp::serve(Config::default()).await);
    for _ in 0..10 {
        app.event(event("file:created", "s", json!({}))).await;
    }
    // Keep writing while the client resumes, to race the replay against live events.
    let writer = {
        let app = app.clone();
        tokio::spawn(async move {
            for _ in 0..40 {
                app.event(event("file:created", "s", json!({}))).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let mut ws = app.ws().await;
    let confirm = ws.subscribe("s", Some(4)).await;
    assert_eq!(confirm["payload"]["recovered"], true);
    writer.await.unwrap();
    let seqs = ws.event_seqs(46).await;
    assert_eq!(seqs, (5..=50).collect::<Vec<_>>());
    ws.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn resume_past_trimmed_history_says_not_recovered() {
    let app = TestApp::serve(Config {
        max_events_per_session: 5,
        ..Config::default()
    })
    .await;
    for _ in 0..12 {
        app.event(event("file:created", "s", json!({}))).await;
    }
    let mut ws = app.ws().await;
    let confirm = ws.subscribe("s", Some(3)).await;
    assert_eq!(confirm["payload"]["recovered"], false);
    assert_eq!(confirm["payload"]["lastSeq"], 12);
    ws.expect_silence(Duration::from_millis(100)).await;
    app.event(event("file:created", "s", json!({}))).await;
    assert_eq!(ws.event_seqs(1).await, [13], "live delivery continues");
    // A cursor that is still inside the kept history recovers.
    let mut ws2 = app.ws().await;
    assert_eq!(
        ws2.subscribe("s", Some(8)).await["payload"]["recovered"],
        true
    );
    assert_eq!(ws2.event_seqs(5).await, [9, 10, 11, 12, 13]);
    // A cursor ahead of the session (it was recreated) cannot be honoured.
    let mut ws3 = app.ws().await;
    assert_eq!(
        ws3.subscribe("s", Some(99)).await["payload"]["recovered"],
        false
    );
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_ping_gets_pong() {
    let app = TestApp::serve(Config::default()).await;
    let mut ws = app.ws().await;
    ws.subscribe("s", None).await;
    ws.send(json!({"type": "unsubscribe", "sessionId": "s"}))
        .await;
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next_json().await, json!({"type": "pong"}));
    app.event(event("file:created", "s", json!({}))).await;
    ws.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn notices_reach_subscribers() {
    let app = TestApp::serve(Config::default()).await;
    app.event(event("session:started", "s", json!({"cwd": "/w"})))
        .await;
    let mut ws = app.ws().await;
    ws.subscribe("s", None).await;
    app.post("/api/sessions/s/commands", json!({"type": "pause"}))
        .await;
    let n = ws.next_json().await;
    assert_eq!(n["type"], "command:queued");
    assert_eq!(n["sessionId"], "s");
    assert_eq!(n["command"]["type"], "pause");
    assert!(n["timestamp"].is_string() && n.get("seq").is_none(), "{n}");
    app.post("/api/sessions/s/awaiting", json!({"promptText": "?"}))
        .await;
    assert_eq!(ws.next_json().await["type"], "awaiting");
    app.post("/api/sessions/s/input", json!({"input": "x"}))
        .await;
    let n = ws.next_json().await;
    assert_eq!(n["type"], "input:queued");
    assert_eq!(n["queueLength"], 1);
    app.request(
        axum::http::Method::PUT,
        "/api/sessions/s",
        Some(json!({"summary": "s"})),
    )
    .await;
    let n = ws.next_json().await;
    assert_eq!(n["type"], "session:updated");
    assert_eq!(n["data"]["summary"], "s");
    assert_eq!(n["data"]["id"], "s");
}

#[tokio::test]
async fn input_over_the_socket_is_queued() {
    let app = TestApp::serve(Config::default()).await;
    app.event(event("session:started", "s", json!({"cwd": "/w"})))
        .await;
    let mut ws = app.ws().await;
    ws.send(json!({"type": "input", "sessionId": "s", "payload": "from ws"}))
        .await;
    ws.send(json!({"type": "input", "sessionId": "missing", "payload": "x"}))
        .await;
    let err = ws.next_json().await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["sessionId"], "missing");
    assert_eq!(err["payload"], "Session not found");
    let got = app.get("/api/sessions/s/input").await.body;
    assert_eq!(got["input"]["input"], "from ws");
}

#[tokio::test]
async fn bad_messages_get_error_frames_and_the_connection_stays() {
    let app = TestApp::serve(Config::default()).await;
    let mut ws = app.ws().await;
    for bad in [
        json!({"type": "dance"}),
        json!({"type": "subscribe"}),
        json!({"type": "subscribe", "sessionId": "a b"}),
    ] {
        ws.send(bad.clone()).await;
        let err = ws.next_json().await;
        assert_eq!(err["type"], "error", "{bad}");
        assert!(err["payload"].is_string());
    }
    ws.stream
        .send(Message::Text("not json".into()))
        .await
        .unwrap();
    assert_eq!(ws.next_json().await["type"], "error");
    ws.stream
        .send(Message::Binary(vec![1, 2].into()))
        .await
        .unwrap();
    assert_eq!(ws.next_json().await["type"], "error");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next_json().await["type"], "pong");
}

#[tokio::test]
async fn clients_over_the_rate_limit_get_an_error_frame() {
    let app = TestApp::serve(Config {
        ws_rate_limit: 5,
        ..Config::default()
    })
    .await;
    let mut ws = app.ws().await;
    for _ in 0..12 {
        ws.send(json!({"type": "ping"})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    for _ in 0..12 {
        let frame = ws.next_json().await;
        match frame["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") => {
                assert!(frame["payload"].as_str().unwrap().contains("Rate limit"));
                limited += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        pongs >= 5 && limited >= 1,
        "pongs {pongs}, limited {limited}"
    );
}

#[tokio::test]
async fn oversized_messages_close_the_connection_with_1009() {
    let app = TestApp::serve(Config {
        ws_max_message_bytes: 1024,
        ..Config::default()
    })
    .await;
    let mut ws = app.ws().await;
    ws.send(json!({"type": "ping", "pad": "x".repeat(4096)}))
        .await;
    let mut saw_error = false;
    loop {
        match ws.next_message().await {
            Some(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(v["type"], "error");
                saw_error = true;
            }
            Some(Message::Close(Some(frame))) => {
                assert_eq!(frame.code, CloseCode::Size);
                break;
            }
            Some(Message::Ping(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
    assert!(saw_error, "an error frame precedes the close");
}

#[tokio::test]
async fn the_server_refuses_clients_beyond_the_maximum_with_1008() {
    let app = TestApp::serve(Config {
        ws_max_clients: 1,
        ..Config::default()
    })
    .await;
    let _first = app.ws().await;
    let url = format!("ws://{}/ws", app.addr.unwrap());
    let (mut second, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    use futures_util::StreamExt;
    match tokio::time::timeout(Duration::from_secs(5), second.next())
        .await
        .unwrap()
    {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Policy),
        other => panic!("expected close 1008, got {other:?}"),
    }
}

#[tokio::test]
async fn idle_clients_get_a_heartbeat() {
    let app = TestApp::serve(Config {
        ws_heartbeat_secs: 1,
        ..Config::default()
    })
    .await;
    let mut ws = app.ws().await;
    let mut saw_ping = false;
    loop {
        match ws.next_message().await {
            Some(Message::Ping(_)) => saw_ping = true,
            Some(Message::Text(t)) => {
                assert_eq!(t.as_str(), r#"{"type":"pong"}"#);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(saw_ping, "a protocol ping comes with the pong frame");
}

#[tokio::test]
async fn a_client_that_cannot_keep_up_is_disconnected_with_1013() {
    // Big events and a tiny inbox: the socket's buffers fill, then the inbox, then the kick.
    let config = Config {
        ws_send_queue: 4,
        max_body_bytes: 1 << 20,
        ..Config::default()
    };
    let app = TestApp::serve(config).await;
    let mut slow = app.ws().await;
    slow.subscribe("s", None).await;
    let pad = "x".repeat(256 * 1024);
    for _ in 0..120 {
        app.event(event("file:created", "s", json!({"pad": pad})))
            .await;
    }
    let mut events = 0;
    let code = loop {
        match slow.next_message().await {
            Some(Message::Text(_)) => events += 1,
            Some(Message::Close(frame)) => break frame.map(|f| f.code),
            Some(_) => {}
            None => break None,
        }
    };
    assert_eq!(code, Some(CloseCode::Again), "after {events} events");
    assert!(
        events < 120,
        "the slow client was cut off, not buffered without bound"
    );
    // The server is fine and other clients still work.
    let mut fresh = app.ws().await;
    fresh.subscribe("s", None).await;
    app.event(event("file:created", "s", json!({}))).await;
    assert_eq!(fresh.event_seqs(1).await, [121]);
}

#[tokio::test]
async fn a_deleted_and_recreated_session_starts_its_subscribers_over() {
    let app = TestApp::serve(Config::default()).await;
    let mut ws = app.ws().await;
    ws.subscribe("s", None).await;
    for _ in 0..3 {
        app.event(event("file:created", "s", json!({}))).await;
    }
    assert_eq!(ws.event_seqs(3).await, [1, 2, 3]);
    let del = app
        .request(axum::http::Method::DELETE, "/api/sessions/s", None)
        .await;
    assert_eq!(del.status, axum::http::StatusCode::NO_CONTENT);
    assert_eq!(ws.next_json().await["type"], "session:deleted");
    app.event(event("session:started", "s", json!({"cwd": "/w"})))
        .await;
    app.event(event("file:created", "s", json!({}))).await;
    assert_eq!(
        ws.event_seqs(2).await,
        [1, 2],
        "the new session's events are not mistaken for duplicates"
    );
}

/// Memory mode: a session deleted and recreated under the same id is another incarnation.
/// A dashboard resuming with the old epoch is told `recovered: false` and gets the new one
/// from seq 1; with the current epoch it resumes exactly; a confirmation names the epoch.
#[tokio::test]
async fn resuming_in_an_old_epoch_starts_over_in_the_new_one() {
    let app = TestApp::serve(Config::default()).await;
    for _ in 0..3 {
        app.event(event("file:created", "s", json!({}))).await;
    }
    let old = app.get("/api/events/s").await.body["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .request(axum::http::Method::DELETE, "/api/sessions/s", None)
        .await;
    assert_eq!(res.status, axum::http::StatusCode::NO_CONTENT);
    for _ in 0..5 {
        app.event(event("file:created", "s", json!({}))).await;
    }
    let new = app.get("/api/events/s").await.body["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(old, new, "a recreated session has a new epoch");
    let mut ws = app.ws().await;
    ws.send(json!({"type": "subscribe", "sessionId": "s", "after": 3, "epoch": old}))
        .await;
    let confirm = ws.next_json().await;
    assert_eq!(confirm["payload"]["recovered"], false, "{confirm}");
    assert_eq!(confirm["payload"]["lastSeq"], 0);
    assert_eq!(confirm["payload"]["epoch"], new.as_str());
    assert_eq!(ws.event_seqs(5).await, [1, 2, 3, 4, 5]);
    let mut current = app.ws().await;
    current
        .send(json!({"type": "subscribe", "sessionId": "s", "after": 3, "epoch": new}))
        .await;
    let confirm = current.next_json().await;
    assert_eq!(confirm["payload"]["recovered"], true, "{confirm}");
    assert_eq!(confirm["payload"]["epoch"], new.as_str());
    assert_eq!(current.event_seqs(2).await, [4, 5]);
}
