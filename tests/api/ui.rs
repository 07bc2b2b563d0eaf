//! `/ui`: the embedded files, their headers (a same-origin Content-Security-Policy, no
//! sniffing, revalidation by ETag), no key needed for them while the API behind them keeps
//! asking for one, and nothing served that is not one of them.

use axum::http::{HeaderMap, StatusCode, header};

use afw::config::{Config, Secret};

use crate::helpers::{TestApp, get_text};

async fn fetch(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    get_text(app, path, headers).await
}

/// `GET /ui`'s status (for the OpenAPI test: the page is not JSON).
pub async fn page_status(app: &TestApp) -> StatusCode {
    fetch(app, "/ui", &[]).await.0
}

#[tokio::test]
async fn the_ui_is_served_from_the_binary_with_a_same_origin_policy() {
    let app = TestApp::new();
    let (status, headers, body) = fetch(&app, "/ui", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(
        body.contains(r#"<script type="module" src="/ui/app.js">"#),
        "{body}"
    );
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    for rule in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(rule), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains('*'),
        "{csp}"
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");

    let (status, headers, js) = fetch(&app, "/ui/live.js", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert!(
        js.contains("apiKey"),
        "the WebSocket carries the key as ?apiKey="
    );
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let (status, _, empty) = fetch(&app, "/ui/live.js", &[("if-none-match", &etag)]).await;
    assert_eq!((status, empty.as_str()), (StatusCode::NOT_MODIFIED, ""));
}

#[tokio::test]
async fn only_the_embedded_files_are_served() {
    let app = TestApp::new();
    for path in [
        "/ui/nope.js",
        "/ui/..%2FCargo.toml",
        "/ui/%2e%2e%2fsrc%2fmain.rs",
        "/ui/index.html%00.js",
        "/ui/style.css/",
        "/ui/sub/app.js",
    ] {
        let (status, _, body) = fetch(&app, path, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(body.starts_with(r#"{"error":"#), "{path}: {body}");
    }
}

#[tokio::test]
async fn the_files_need_no_key_the_api_still_does_and_foreign_pages_are_refused() {
    let app = TestApp::with_config(Config {
        api_key: Some(Secret("k-ui".into())),
        ..Config::default()
    });
    assert_eq!(fetch(&app, "/ui", &[]).await.0, StatusCode::OK);
    assert_eq!(fetch(&app, "/ui/app.js", &[]).await.0, StatusCode::OK);
    assert_eq!(
        fetch(&app, "/api/sessions", &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    let bearer = [("authorization", "Bearer k-ui")];
    assert_eq!(
        fetch(&app, "/api/sessions", &bearer).await.0,
        StatusCode::OK
    );
    // Its own pages may call it; another site's may not, not even for the files.
    let own = [
        ("origin", "http://localhost:3001"),
        ("authorization", "Bearer k-ui"),
    ];
    assert_eq!(fetch(&app, "/api/sessions", &own).await.0, StatusCode::OK);
    let foreign = [("origin", "http://evil.example")];
    assert_eq!(
        fetch(&app, "/ui/app.js", &foreign).await.0,
        StatusCode::FORBIDDEN
    );
}
