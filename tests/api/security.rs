//! Who may talk to afw: origins, hosts, API keys and rate limits (README "Security").

use afw::config::{Config, Secret};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::TestApp;

/// One request with these headers; the status, headers and JSON body.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(path);
    let has_host = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
    if !has_host {
        req = req.header("host", "localhost:3001");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let res = app
        .router
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, json)
}

fn keyed(keys: &[&str]) -> Config {
    Config {
        api_key: keys.first().map(|k| Secret((*k).to_owned())),
        api_keys: (keys.len() > 1).then(|| Secret(keys[1..].join(","))),
        ..Config::default()
    }
}

const EVIL: &str = "http://evil.example";
const DASHBOARD: &str = "http://localhost:5173";

#[tokio::test]
async fn a_foreign_origin_is_refused_and_the_dashboard_is_allowed() {
    let app = TestApp::new();
    app.start_session("s").await;
    // The attack of the issue: a preflight, then the POST that would type into the agent.
    let (status, headers, body) = send(
        &app,
        Method::OPTIONS,
        "/api/sessions/s/input",
        &[
            ("origin", EVIL),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!headers.contains_key("access-control-allow-origin"));
    assert!(
        body["error"].as_str().unwrap().contains("evil.example"),
        "{body}"
    );
    let (status, _, _) = send(
        &app,
        Method::POST,
        "/api/sessions/s/input",
        &[("origin", EVIL)],
        Some(json!({"input": "rm -rf ~"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for path in ["/api/sessions", "/api/terminal/s/buffer", "/api/events/s"] {
        let (status, headers, _) = send(&app, Method::GET, path, &[("origin", EVIL)], None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(!headers.contains_key("access-control-allow-origin"));
    }
    let popped = app.get("/api/sessions/s/input").await;
    assert_eq!(popped.body["available"], false, "nothing was queued");

    // The dashboard's dev origin: preflight and request both allowed, origin mirrored.
    let (status, headers, _) = send(
        &app,
        Method::OPTIONS,
        "/api/sessions/s/input",
        &[
            ("origin", DASHBOARD),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type,x-api-key"),
        ],
        None,
    )
    .await;
    assert!(status.is_success(), "{status}");
    assert_eq!(headers["access-control-allow-origin"], DASHBOARD);
    let (status, headers, _) = send(
        &app,
        Method::POST,
        "/api/sessions/s/input",
        &[("origin", DASHBOARD)],
        Some(json!({"input": "yes"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers["access-control-allow-origin"], DASHBOARD);
    // afw's own origin (a page it serves) is allowed too.
    let (status, _, _) = send(
        &app,
        Method::GET,
        "/api/sessions",
        &[("origin", "http://localhost:3001")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_origin_list_is_configurable_and_star_must_be_asked_for() {
    let app = TestApp::with_config(Config {
        cors_origins: "https://dash.example".into(),
        ..Config::default()
    });
    let get = |origin: &'static str| {
        let app = &app;
        async move {
            send(
                app,
                Method::GET,
                "/api/sessions",
                &[("origin", origin)],
                None,
            )
            .await
            .0
        }
    };
    assert_eq!(get("https://dash.example").await, StatusCode::OK);
    assert_eq!(get(DASHBOARD).await, StatusCode::FORBIDDEN);
    let any = TestApp::with_config(Config {
        cors_origins: "*".into(),
        ..Config::default()
    });
    let (status, headers, _) = send(
        &any,
        Method::GET,
        "/api/sessions",
        &[("origin", EVIL)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["access-control-allow-origin"], EVIL);
}

#[tokio::test]
async fn a_rebound_host_is_refused_on_loopback() {
    let app = TestApp::new();
    for host in ["evil.example", "evil.example:3001", "192.168.1.20:3001"] {
        let (status, _, body) =
            send(&app, Method::GET, "/api/sessions", &[("host", host)], None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{host}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("AFW_ALLOWED_HOSTS")
        );
    }
    for host in [
        "localhost:3001",
        "127.0.0.1:3001",
        "[::1]:3001",
        "localhost",
    ] {
        let (status, _, _) =
            send(&app, Method::GET, "/api/sessions", &[("host", host)], None).await;
        assert_eq!(status, StatusCode::OK, "{host}");
    }
    let listed = TestApp::with_config(Config {
        allowed_hosts: "afw.lan".into(),
        ..Config::default()
    });
    let (status, _, _) = send(
        &listed,
        Method::GET,
        "/api/sessions",
        &[("host", "afw.lan:3001")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn every_way_around_the_api_key_is_closed() {
    let app = TestApp::with_config(keyed(&["k-live"]));
    let get = |headers: &'static [(&'static str, &'static str)], path: &'static str| {
        let app = &app;
        async move { send(app, Method::GET, path, headers, None).await }
    };
    let (status, headers, body) = get(&[], "/api/sessions").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"afw\"");
    assert!(
        body["error"].as_str().unwrap().contains("API key"),
        "{body}"
    );
    let refused: [&[(&str, &str)]; 6] = [
        &[("authorization", "Bearer k-wrong")],
        &[("x-api-key", "k-live-but-longer")],
        &[("authorization", "Basic k-live")],
        &[("authorization", "k-live")],
        &[("api-key", "k-live")],
        &[("cookie", "apiKey=k-live")],
    ];
    for headers in refused {
        assert_eq!(
            get(headers, "/api/sessions").await.0,
            StatusCode::UNAUTHORIZED,
            "{headers:?}"
        );
    }
    // The query form is for the WebSocket upgrade only.
    let (status, _, body) = get(&[], "/api/sessions?apiKey=k-live").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"].as_str().unwrap().contains("WebSocket"),
        "{body}"
    );
    assert_eq!(
        get(&[], "/ws?apiKey=k-wrong").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get(&[], "/ws").await.0, StatusCode::UNAUTHORIZED);
    // Accepted ways.
    assert_eq!(
        get(&[("authorization", "Bearer k-live")], "/api/sessions")
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        get(&[("authorization", "bearer k-live")], "/api/sessions")
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        get(&[("x-api-key", "k-live")], "/api/sessions").await.0,
        StatusCode::OK
    );
    // Health and readiness stay open; so do CORS preflights (browsers send no key there).
    assert_eq!(get(&[], "/health").await.0, StatusCode::OK);
    assert_eq!(get(&[], "/ready").await.0, StatusCode::OK);
    let (status, _, _) = send(
        &app,
        Method::OPTIONS,
        "/api/sessions",
        &[
            ("origin", DASHBOARD),
            ("access-control-request-method", "GET"),
        ],
        None,
    )
    .await;
    assert!(status.is_success(), "{status}");
    // A 401 to the dashboard is readable by it.
    let (status, headers, _) = get(&[("origin", DASHBOARD)], "/api/sessions").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["access-control-allow-origin"], DASHBOARD);
}

#[tokio::test]
async fn keys_rotate_without_downtime() {
    // During the rotation both keys work; afterwards the removed one does not.
    let both = TestApp::with_config(keyed(&["k-old", "k-new"]));
    for key in ["k-old", "k-new"] {
        let (status, _, _) = send(
            &both,
            Method::GET,
            "/api/sessions",
            &[("x-api-key", key)],
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{key}");
    }
    let rotated = TestApp::with_config(Config {
        api_keys: Some(Secret("k-new".into())),
        ..Config::default()
    });
    let old = send(
        &rotated,
        Method::GET,
        "/api/sessions",
        &[("x-api-key", "k-old")],
        None,
    )
    .await;
    assert_eq!(old.0, StatusCode::UNAUTHORIZED);
    let new = send(
        &rotated,
        Method::GET,
        "/api/sessions",
        &[("x-api-key", "k-new")],
        None,
    )
    .await;
    assert_eq!(new.0, StatusCode::OK);
}

#[tokio::test]
async fn the_websocket_upgrade_checks_origin_and_key() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = TestApp::serve(keyed(&["k-ws"])).await;
    let addr = app.addr.unwrap();
    let upgrade = |origin: Option<&str>, query: &str, header: Option<&str>| {
        let mut req = format!("ws://{addr}/ws{query}")
            .into_client_request()
            .unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        if let Some(k) = header {
            req.headers_mut().insert("x-api-key", k.parse().unwrap());
        }
        async move {
            match tokio_tungstenite::connect_async(req).await {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                    let body: Value =
                        serde_json::from_slice(res.body().as_deref().unwrap_or_default())
                            .unwrap_or(Value::Null);
                    assert!(body["error"].is_string(), "JSON error: {body}");
                    res.status().as_u16()
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    assert_eq!(upgrade(Some(EVIL), "?apiKey=k-ws", None).await, 403);
    assert_eq!(upgrade(Some(DASHBOARD), "", None).await, 401);
    assert_eq!(upgrade(Some(DASHBOARD), "?apiKey=nope", None).await, 401);
    assert_eq!(upgrade(Some(DASHBOARD), "?apiKey=k-ws", None).await, 101);
    assert_eq!(upgrade(None, "", Some("k-ws")).await, 101);
}

#[tokio::test]
async fn an_unkeyed_websocket_from_a_foreign_page_gets_no_history() {
    let app = TestApp::serve(Config::default()).await;
    app.start_session("s").await;
    let addr = app.addr.unwrap();
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert("origin", EVIL.parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(res) => assert_eq!(res.status(), 403),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn over_the_rate_limit_is_a_429_with_its_headers() {
    let app = TestApp::with_config(Config {
        rate_limit_writes: 2,
        rate_limit_burst_secs: 1,
        ..Config::default()
    });
    app.start_session("s").await;
    let post = || {
        send(
            &app,
            Method::POST,
            "/api/sessions/s/input",
            &[],
            Some(json!({"input": 1})),
        )
    };
    assert_eq!(post().await.0, StatusCode::CREATED);
    assert_eq!(post().await.0, StatusCode::CREATED);
    let (status, headers, body) = post().await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["ratelimit-limit"], "2");
    assert_eq!(headers["ratelimit-remaining"], "0");
    assert_eq!(headers["ratelimit-reset"], "1");
    assert_eq!(headers["ratelimit-policy"], "2;w=1;burst=2");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Too many write requests"),
        "{body}"
    );
    // Another class is not affected, nor are health checks.
    assert_eq!(app.get("/api/sessions/s").await.status, StatusCode::OK);
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    // Off by flag.
    let off = TestApp::with_config(Config {
        rate_limit_writes: 1,
        rate_limit_burst_secs: 1,
        rate_limit_off: true,
        ..Config::default()
    });
    off.start_session("s").await;
    for _ in 0..5 {
        let (status, _, _) = send(
            &off,
            Method::POST,
            "/api/sessions/s/input",
            &[],
            Some(json!({"input": 1})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
}

#[tokio::test]
async fn the_default_limits_let_a_busy_machine_through() {
    // 20 agents on one machine (one peer address), each posting a burst of 100 events.
    let app = TestApp::new();
    for s in 0..20 {
        for _ in 0..100 {
            app.event(crate::helpers::event(
                "file:modified",
                &format!("s{s}"),
                json!({}),
            ))
            .await;
        }
    }
}

#[test]
fn secrets_never_show_in_help() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_afw"))
        .arg("--help")
        .env("AFW_API_KEY", "sekrit-key-1")
        .env("AFW_API_KEYS", "sekrit-key-2,sekrit-key-3")
        .env("REDIS_URL", "redis://:sekrit-pass@db:6379")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("AFW_API_KEY") && help.contains("REDIS_URL"),
        "{help}"
    );
    assert!(!help.contains("sekrit"), "{help}");
}

#[tokio::test]
async fn the_start_line_says_whether_auth_is_on_and_hides_the_key() {
    for (env, says) in [
        (&[("AFW_API_KEY", "sekrit-key")][..], "API keys required"),
        (&[][..], "API keys not required"),
    ] {
        let (mut child, lines) = start_binary("", env).await;
        child.kill().await.unwrap();
        let line = lines.last().unwrap();
        assert!(line.contains(says), "{line}");
        assert!(lines.iter().all(|l| !l.contains("sekrit")), "{lines:#?}");
    }
}

/// Starts the `afw` binary through `sh` (for `ulimit`) and returns it with its first
/// log lines up to the start line.
async fn start_binary(
    shell_prefix: &str,
    env: &[(&str, &str)],
) -> (tokio::process::Child, Vec<String>) {
    use tokio::io::AsyncBufReadExt;
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{shell_prefix} exec {}", env!("CARGO_BIN_EXE_afw")))
        .env("PORT", "0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("AFW_API_KEY")
        .env_remove("AFW_API_KEYS")
        .env_remove("REDIS_URL")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.contains("listening on");
            seen.push(line);
            if done {
                return;
            }
        }
    })
    .await
    .expect("afw started");
    (child, seen)
}

#[tokio::test]
async fn beyond_loopback_without_a_key_is_a_warning_at_start() {
    let (mut child, lines) = start_binary("", &[("HOST", "0.0.0.0")]).await;
    child.kill().await.unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("without an API key")),
        "{lines:#?}"
    );
    let (mut child, lines) = start_binary("", &[("HOST", "0.0.0.0"), ("AFW_API_KEY", "k")]).await;
    child.kill().await.unwrap();
    assert!(
        !lines.iter().any(|l| l.contains("without an API key")),
        "{lines:#?}"
    );
    let (mut child, lines) = start_binary("", &[("AFW_CORS_ORIGINS", "*")]).await;
    child.kill().await.unwrap();
    assert!(
        lines.iter().any(|l| l.contains("AFW_CORS_ORIGINS=*")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn the_open_file_limit_is_raised_to_the_hard_limit_at_start() {
    let hard = rlimit_hard();
    if hard <= 512 {
        return; // Nothing to raise on this machine.
    }
    let (mut child, _) = start_binary("ulimit -Sn 256;", &[("HOST", "127.0.0.1")]).await;
    let pid = child.id().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    child.kill().await.unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let soft: u64 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert_eq!(soft, hard, "{line}");
}

fn rlimit_hard() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace()
        .nth(4)
        .unwrap()
        .parse()
        .unwrap_or(u64::MAX)
}
