//! Bounded memory: sessions, event sizes, per-session and total event bytes, listings
//! bounded in bytes, paginated users, subscriptions per client, silent WebSocket clients.

use std::time::Duration;

use afw::config::Config;
use axum::http::StatusCode;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{TestApp, event};

/// An event of about `bytes` bytes.
fn sized(session: &str, bytes: usize) -> Value {
    event(
        "file:modified",
        session,
        json!({"pad": "x".repeat(bytes.saturating_sub(90))}),
    )
}

async fn advance(ms: u64) {
    // The test clock is tokio's (paused in these tests): activity order needs time to pass.
    tokio::time::advance(Duration::from_millis(ms)).await;
}

#[tokio::test(start_paused = true)]
async fn at_the_session_cap_the_least_recently_active_are_evicted() {
    let app = TestApp::serve(Config {
        max_sessions: 5,
        ..Config::default()
    })
    .await;
    for i in 0..5 {
        app.start_session(&format!("s{i}")).await;
        advance(10).await;
    }
    // s0 is the oldest, but it is active again: s1 is now the least recently active.
    app.event(event("file:created", "s0", json!({}))).await;
    advance(10).await;
    let mut ws = app.ws().await;
    ws.subscribe("s1", None).await;
    app.start_session("s5").await;
    let notice = ws.next_json().await;
    assert_eq!(notice["type"], "session:deleted", "{notice}");
    assert_eq!(notice["reason"], "evicted");
    assert_eq!(
        app.get("/api/sessions/s1").await.status,
        StatusCode::NOT_FOUND
    );
    for kept in ["s0", "s2", "s3", "s4", "s5"] {
        assert_eq!(
            app.get(&format!("/api/sessions/{kept}")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(app.get("/api/sessions").await.body["count"], 5);
}

#[tokio::test]
async fn an_event_over_the_size_limit_is_413_and_nothing_is_stored() {
    let app = TestApp::with_config(Config {
        max_event_bytes: 1000,
        ..Config::default()
    });
    let res = app.post("/api/events", sized("s", 2000)).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.body["limit"], 1000);
    let batch = json!({"events": [sized("s", 500), sized("s", 2000)]});
    let res = app.post("/api/events/batch", batch).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(res.body["error"].as_str().unwrap().contains("events[1]"));
    assert_eq!(
        app.get("/api/sessions/s").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post("/api/events", sized("s", 900)).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_session_keeps_only_its_byte_budget_of_events() {
    let app = TestApp::with_config(Config {
        session_budget_bytes: 3000,
        ..Config::default()
    });
    for _ in 0..20 {
        app.event(sized("s", 500)).await;
    }
    let res = app.get("/api/events/s?after=0").await;
    let events = res.body["events"].as_array().unwrap();
    let bytes: usize = events.iter().map(|e| e.to_string().len()).sum();
    assert!(bytes <= 3000, "{bytes} bytes kept");
    assert!(events.len() >= 5, "the newest that fit: {}", events.len());
    assert_eq!(events.last().unwrap()["seq"], 20);
    assert_eq!(res.body["lastSeq"], 20);
    // A resume from before the kept history cannot be honoured.
    let app = TestApp::serve(Config {
        session_budget_bytes: 3000,
        ..Config::default()
    })
    .await;
    for _ in 0..20 {
        app.event(sized("s", 500)).await;
    }
    let mut ws = app.ws().await;
    assert_eq!(
        ws.subscribe("s", Some(0)).await["payload"]["recovered"],
        false
    );
}

#[tokio::test(start_paused = true)]
async fn past_the_memory_budget_the_least_recently_active_sessions_go() {
    let app = TestApp::with_config(Config {
        memory_budget_bytes: 10_000,
        ..Config::default()
    });
    for s in ["a", "b", "c"] {
        for _ in 0..6 {
            app.event(sized(s, 500)).await;
        }
        advance(10).await;
    }
    // 9 000 bytes in all; d's first events push it past the budget: a (oldest) goes.
    for _ in 0..4 {
        app.event(sized("d", 500)).await;
    }
    assert_eq!(
        app.get("/api/sessions/a").await.status,
        StatusCode::NOT_FOUND
    );
    for kept in ["b", "c", "d"] {
        assert_eq!(
            app.get(&format!("/api/sessions/{kept}")).await.status,
            StatusCode::OK,
            "{kept}"
        );
    }
}

#[tokio::test]
async fn event_listings_are_bounded_in_bytes_and_say_where_to_go_on() {
    let app = TestApp::with_config(Config {
        max_response_bytes: 2000,
        ..Config::default()
    });
    for _ in 0..10 {
        app.event(sized("s", 500)).await;
    }
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let res = app.get(&format!("/api/events/s?after={after}")).await;
        let events = res.body["events"].as_array().unwrap().clone();
        assert!(!events.is_empty() && events.len() <= 4, "{}", events.len());
        seen.extend(events.iter().map(|e| e["seq"].as_u64().unwrap()));
        if res.body["more"] != true {
            break;
        }
        after = res.body["nextAfter"].as_u64().unwrap();
    }
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    let recent = app.get("/api/events/s/recent?limit=100").await;
    let newest: Vec<u64> = recent.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(newest.last(), Some(&10));
    assert!(newest.len() < 10);
}

#[tokio::test]
async fn session_and_user_listings_page_by_cursor() {
    let app = TestApp::with_config(Config {
        max_response_bytes: 1500,
        ..Config::default()
    });
    for i in 0..5 {
        app.event(event(
            "session:started",
            &format!("s{i}"),
            json!({"cwd": "/w", "user": format!("user{i}")}),
        ))
        .await;
    }
    // Sessions: 5 fit the item limit, not the byte bound.
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/sessions?cursor={c}"),
            None => "/api/sessions".to_owned(),
        };
        let res = app.get(&path).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        for s in res.body["sessions"].as_array().unwrap() {
            ids.push(s["id"].as_str().unwrap().to_owned());
        }
        match res.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    ids.sort();
    assert_eq!(ids, ["s0", "s1", "s2", "s3", "s4"]);
    // Users: two a page.
    let mut users = Vec::new();
    let mut path = "/api/users?limit=2".to_owned();
    loop {
        let res = app.get(&path).await;
        assert!(res.body["count"].as_u64().unwrap() <= 2);
        for u in res.body["users"].as_array().unwrap() {
            users.push(u["user"].as_str().unwrap().to_owned());
        }
        match res.body["nextCursor"].as_str() {
            Some(c) => path = format!("/api/users?limit=2&cursor={c}"),
            None => break,
        }
    }
    // Newest activity first; each user once across the pages.
    let mut sorted = users.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), users.len(), "a user on two pages: {users:?}");
    assert_eq!(sorted, ["user0", "user1", "user2", "user3", "user4"]);
    let bad = app.get("/api/users?limit=0").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_client_may_follow_only_so_many_sessions() {
    let app = TestApp::serve(Config {
        ws_max_subscriptions: 2,
        ..Config::default()
    })
    .await;
    let mut ws = app.ws().await;
    ws.subscribe("a", None).await;
    ws.subscribe("b", None).await;
    ws.send(json!({"type": "subscribe", "sessionId": "c"}))
        .await;
    let err = ws.next_json().await;
    assert_eq!(err["type"], "error");
    assert!(
        err["payload"]
            .as_str()
            .unwrap()
            .contains("Too many subscriptions")
    );
    ws.subscribe("a", Some(0)).await;
    ws.send(json!({"type": "unsubscribe", "sessionId": "b"}))
        .await;
    ws.subscribe("c", None).await;
}

#[tokio::test]
async fn a_websocket_client_silent_for_two_heartbeats_is_closed() {
    let app = TestApp::serve(Config {
        ws_heartbeat_secs: 1,
        ..Config::default()
    })
    .await;
    // This one reads (and so answers every ping): it stays.
    let mut alive = app.ws().await;
    // This one never reads, so it never answers a ping.
    let mut silent = app.ws().await;
    let until = tokio::time::Instant::now() + Duration::from_millis(3500);
    while tokio::time::Instant::now() < until {
        match tokio::time::timeout_at(until, alive.stream.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Close(f)))) => panic!("a live client was closed: {f:?}"),
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("{other:?}"),
        }
    }
    let mut code = None;
    while let Ok(Some(Ok(msg))) =
        tokio::time::timeout(Duration::from_secs(2), silent.stream.next()).await
    {
        if let Message::Close(f) = msg {
            code = f.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(code, Some(1008));
}

#[tokio::test]
async fn input_items_metadata_and_chains_are_bounded() {
    let app = TestApp::new();
    app.start_session("s").await;
    let big = "x".repeat(70 * 1024);
    let res = app
        .post("/api/sessions/s/input", json!({"input": big}))
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.body["limit"], 65536);
    let res = app
        .request(
            axum::http::Method::PUT,
            "/api/sessions/s",
            Some(json!({"metadata": {"blob": big}})),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.body["details"][0]["path"], "metadata");
    let events: Vec<Value> = (0..1001)
        .map(|i| {
            event(
                "chain:compiled",
                "s",
                json!({"chainId": format!("c{i}"), "steps": []}),
            )
        })
        .collect();
    for chunk in events.chunks(500) {
        let res = app
            .post("/api/events/batch", json!({"events": chunk}))
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    }
    let chains = app.get("/api/sessions/s/chains").await;
    assert_eq!(
        chains.body["count"], 1000,
        "the 1001st chain is stored as an event only"
    );
    assert_eq!(
        app.get("/api/chains/c1000").await.status,
        StatusCode::NOT_FOUND
    );
}
