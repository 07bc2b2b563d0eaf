use afw::config::Config;
use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = TestApp::new();
    let res = app.get("/api/nothing/here").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.body["error"], "No route for GET /api/nothing/here");
    let res = app.request(Method::DELETE, "/health", None).await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.body["error"], "Method not allowed");
}

#[tokio::test]
async fn bodies_need_the_json_content_type() {
    let app = TestApp::new();
    let body = Some(json!({"cwd": "/w"}).to_string());
    let res = app
        .raw(
            Method::POST,
            "/api/sessions",
            Some("text/plain"),
            body.clone(),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        res.body["error"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );
    let res = app
        .raw(Method::POST, "/api/sessions", None, body.clone())
        .await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let res = app
        .raw(
            Method::POST,
            "/api/sessions",
            Some("application/json; charset=utf-8"),
            body,
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
}

#[tokio::test]
async fn malformed_json_is_a_400_with_the_position() {
    let app = TestApp::new();
    let res = app
        .raw(
            Method::POST,
            "/api/sessions",
            Some("application/json"),
            Some("{\"cwd\": ".into()),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(
        res.body["error"]
            .as_str()
            .unwrap()
            .starts_with("Malformed JSON"),
        "{}",
        res.body
    );
    let res = app
        .raw(
            Method::POST,
            "/api/events",
            Some("application/json"),
            Some("{oops}".into()),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = app
        .raw(
            Method::POST,
            "/api/sessions",
            Some("application/json"),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.body["details"][0]["path"], "body");
}

#[tokio::test]
async fn oversized_bodies_are_a_413() {
    let app = TestApp::with_config(Config {
        max_body_bytes: 1024,
        ..Config::default()
    });
    let big =
        json!({"type": "file:created", "sessionId": "s", "timestamp": 1, "pad": "x".repeat(2000)});
    let res = app.post("/api/events", big).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.body["limit"], 1024);
    assert_eq!(
        app.get("/api/sessions/s").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn terminal_output_over_one_mebibyte_is_a_413() {
    let app = TestApp::with_config(Config {
        max_body_bytes: 4 << 20,
        ..Config::default()
    });
    let res = app
        .post(
            "/api/terminal/s/output",
            json!({"output": "x".repeat((1 << 20) + 1), "stream": "stdout"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(start_paused = true)]
async fn health_and_ready_report_memory_storage() {
    let app = TestApp::new();
    let res = app.get("/health").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["status"], "ok");
    assert_eq!(res.body["storage"], "memory");
    assert!(res.body["instanceId"].as_str().unwrap().starts_with("afw-"));
    assert!(res.body["uptime"].is_number());
    assert_eq!(res.body["timestamp"], "2026-11-20T14:00:00.000Z");
    let res = app.get("/ready").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["ready"], true);
}

#[tokio::test]
async fn an_empty_redis_url_means_memory_storage() {
    let config = Config {
        redis_url: Some(String::new()),
        ..Config::default()
    };
    let app = afw::app::build(config, afw::app::Ports::production()).expect("builds");
    assert_eq!(app.backend(), "memory");
}

#[tokio::test]
async fn unusable_redis_urls_fail_the_build_with_a_clear_message() {
    for (url, needle) in [
        (
            "rediss://secure.example:6380/#insecure",
            "AFW_REDIS_CA_FILE",
        ),
        ("not a url", "REDIS_URL"),
        ("redis+unix:///tmp/redis.sock", "Unix socket"),
    ] {
        let config = Config {
            redis_url: Some(url.into()),
            ..Config::default()
        };
        let err = afw::app::build(config, afw::app::Ports::production())
            .err()
            .expect("must refuse");
        assert!(err.to_string().contains(needle), "{url}: {err}");
    }
}

#[tokio::test]
async fn browsers_get_cors_headers_and_hooks_do_not_need_them() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    let app = TestApp::new();
    let req = Request::get("/health")
        .header("origin", "http://localhost:5173")
        .body(Body::empty())
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/sessions/s/commands")
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .body(Body::empty())
        .unwrap();
    let res = app.router.clone().oneshot(preflight).await.unwrap();
    assert!(res.status().is_success());
    assert!(res.headers().contains_key("access-control-allow-methods"));
    let res = app.get("/health").await;
    assert!(!res.headers.contains_key("access-control-allow-origin"));
    assert_eq!(res.headers["cache-control"], "no-store");
}
