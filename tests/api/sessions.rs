use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, event};

#[tokio::test]
async fn create_session_generates_an_id_and_starts_pending() {
    let app = TestApp::new();
    let res = app
        .post("/api/sessions", json!({"cwd": "/home/alice/src", "hostname": "h", "platform": "linux", "userId": "alice"}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let id = res.body["id"].as_str().unwrap();
    assert!(id.starts_with("session-"), "{id}");
    assert_eq!(res.body["status"], "pending");
    assert_eq!(res.body["user"], "alice");
    assert_eq!(res.body["cwd"], "/home/alice/src");
    assert_eq!(res.body["eventCount"], 0);
    let got = app.get(&format!("/api/sessions/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["chains"], json!([]));
}

#[tokio::test]
async fn a_client_chosen_id_is_kept_and_a_taken_one_is_a_conflict() {
    let app = TestApp::new();
    let body = json!({"cwd": "/w", "id": "7f3c2a1e-5b9d-4e8f-a6c2-1d0e9b8a7c65"});
    let first = app.post("/api/sessions", body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body["id"], "7f3c2a1e-5b9d-4e8f-a6c2-1d0e9b8a7c65");
    let second = app.post("/api/sessions", body).await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert!(
        second.body["error"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
}

#[tokio::test]
async fn create_session_validates_its_input() {
    let app = TestApp::new();
    for (body, status) in [
        (json!({"cwd": "relative"}), StatusCode::BAD_REQUEST),
        (json!({"cwd": "/etc/nginx"}), StatusCode::FORBIDDEN),
        (json!({"cwd": "/home/x/../../proc"}), StatusCode::FORBIDDEN),
        (
            json!({"cwd": "C:\\Windows\\System32"}),
            StatusCode::FORBIDDEN,
        ),
        (
            json!({"cwd": "/w", "id": "bad id"}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"cwd": "/w", "bogus": 1}), StatusCode::BAD_REQUEST),
        (json!({}), StatusCode::BAD_REQUEST),
        (json!({"cwd": 5}), StatusCode::BAD_REQUEST),
    ] {
        let res = app.post("/api/sessions", body.clone()).await;
        assert_eq!(res.status, status, "{body} -> {}", res.body);
        assert!(res.body["error"].is_string(), "{}", res.body);
    }
    // The server never looks at its own filesystem: a path that does not exist here is fine.
    let res = app
        .post(
            "/api/sessions",
            json!({"cwd": "/no/such/dir/on/this/server"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
}

#[tokio::test]
async fn unknown_session_is_a_json_404_naming_it() {
    let app = TestApp::new();
    let res = app.get("/api/sessions/nope").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(
        res.body,
        json!({"error": "Session not found", "sessionId": "nope"})
    );
    let res = app.get("/api/sessions/bad%20id").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn list_filters_by_status_and_user_and_pages_with_a_cursor() {
    let app = TestApp::new();
    for (i, user) in ["alice", "bob", "alice", "carol", "alice"]
        .iter()
        .enumerate()
    {
        app.event(event(
            "session:started",
            &format!("s{i}"),
            json!({"user": user, "cwd": "/w"}),
        ))
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let res = app
        .request(
            Method::PUT,
            "/api/sessions/s1",
            Some(json!({"status": "completed"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);

    let all = app.get("/api/sessions").await;
    assert_eq!(all.body["count"], 5);
    // Newest activity first: s1 was just updated.
    let ids: Vec<&str> = all.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s1", "s4", "s3", "s2", "s0"]);
    assert!(all.body["sessions"][0].get("chains").is_none());

    let alice = app.get("/api/sessions?user=alice").await;
    assert_eq!(alice.body["count"], 3);
    let done = app.get("/api/sessions?status=completed").await;
    assert_eq!(done.body["count"], 1);
    assert_eq!(done.body["sessions"][0]["id"], "s1");

    let mut seen = Vec::new();
    let mut path = "/api/sessions?limit=2".to_owned();
    loop {
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        for s in page.body["sessions"].as_array().unwrap() {
            seen.push(s["id"].as_str().unwrap().to_owned());
        }
        match page.body["nextCursor"].as_str() {
            Some(c) => path = format!("/api/sessions?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["s1", "s4", "s3", "s2", "s0"]);

    for bad in [
        "status=sleeping",
        "limit=0",
        "limit=-3",
        "limit=abc",
        "cursor=zzz",
        "colour=red",
    ] {
        let res = app.get(&format!("/api/sessions?{bad}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {}", res.body);
    }
}

#[tokio::test]
async fn update_to_completed_sets_end_and_duration_and_delete_removes_everything() {
    let app = TestApp::new();
    app.event(event("session:started", "s", json!({"cwd": "/w"})))
        .await;
    app.event(event(
        "chain:compiled",
        "s",
        json!({"chainId": "c1", "title": "T", "steps": []}),
    ))
    .await;
    let res = app
        .request(
            Method::PUT,
            "/api/sessions/s",
            Some(json!({"status": "completed", "summary": "done", "endReason": "manual", "metadata": {"k": 1}})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "completed");
    assert!(res.body["endedAt"].is_string());
    assert!(res.body["duration"].is_u64());
    assert_eq!(res.body["summary"], "done");
    assert_eq!(res.body["metadata"], json!({"k": 1}));

    let bad = app
        .request(
            Method::PUT,
            "/api/sessions/s",
            Some(json!({"status": "paused"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = app
        .request(
            Method::PUT,
            "/api/sessions/s",
            Some(json!({"metadata": [1]})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let missing = app
        .request(
            Method::PUT,
            "/api/sessions/zz",
            Some(json!({"summary": "x"})),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let del = app.request(Method::DELETE, "/api/sessions/s", None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/sessions/s").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/chains/c1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/api/events/s").await.body["count"], 0);
    let again = app.request(Method::DELETE, "/api/sessions/s", None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn chains_are_listed_per_session_and_fetched_by_id() {
    let app = TestApp::new();
    app.event(event(
        "chain:compiled",
        "s",
        json!({"chainId": "c1", "title": "Fix", "steps": [{"stepNumber": 1, "action": "code"}], "source": "composed", "ref": "r"}),
    ))
    .await;
    app.event(event("step:spawned", "s", json!({"stepNumber": 1})))
        .await;
    let list = app.get("/api/sessions/s/chains").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["count"], 1);
    assert_eq!(list.body["sessionId"], "s");
    let chain = app.get("/api/chains/c1").await;
    assert_eq!(chain.status, StatusCode::OK);
    assert_eq!(chain.body["source"], "composed");
    assert_eq!(chain.body["ref"], "r");
    assert_eq!(chain.body["steps"][0]["status"], "in_progress");
    assert_eq!(chain.body["currentStep"], 1);
    let missing = app.get("/api/chains/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["chainId"], "nope");
    assert_eq!(
        app.get("/api/sessions/zz/chains").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn users_are_derived_from_sessions() {
    let app = TestApp::new();
    app.event(event(
        "session:started",
        "a1",
        json!({"user": "alice", "cwd": "/w"}),
    ))
    .await;
    app.event(event(
        "session:started",
        "a2",
        json!({"user": "alice", "cwd": "/w"}),
    ))
    .await;
    app.event(event(
        "session:started",
        "b1",
        json!({"user": "bob", "cwd": "/w"}),
    ))
    .await;
    app.event(event("session:ended", "b1", json!({"user": "bob"})))
        .await;
    let res = app.get("/api/users").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["count"], 2);
    // Newest activity first: bob's session ended last.
    let (bob, alice) = (&res.body["users"][0], &res.body["users"][1]);
    assert_eq!(alice["id"], "alice");
    assert_eq!(alice["sessionCount"], 2);
    assert_eq!(alice["isOnline"], true);
    assert_eq!(bob["id"], "bob");
    assert_eq!(bob["isOnline"], false);
    assert_eq!(bob["sessions"][0]["status"], "completed");
    let one = app.get("/api/users/alice/sessions").await;
    assert_eq!(one.body["user"], "alice");
    assert_eq!(one.body["sessionCount"], 2);
    assert_eq!(one.body["sessions"][0]["cwd"], "/w");
    assert_eq!(
        app.get("/api/users/nobody/sessions").await.body["sessionCount"],
        0
    );
}

#[tokio::test]
async fn awaiting_sets_the_conversation_state() {
    let app = TestApp::new();
    app.event(event("session:started", "s", json!({"cwd": "/w"})))
        .await;
    let res = app
        .post(
            "/api/sessions/s/awaiting",
            json!({"promptType": "choice", "promptText": "Go?", "quickResponses": ["yes", "no"]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.body,
        json!({"status": "awaiting", "sessionId": "s", "conversationState": "awaiting_input"})
    );
    let s = app.get("/api/sessions/s").await.body;
    assert_eq!(s["conversationState"], "awaiting_input");
    assert_eq!(s["lastPrompt"]["text"], "Go?");
    assert_eq!(s["lastPrompt"]["quickResponses"], json!(["yes", "no"]));
    let missing = app.post("/api/sessions/zz/awaiting", json!({})).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}
