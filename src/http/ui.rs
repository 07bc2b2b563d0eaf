//! `/ui`: the session management UI, plain HTML, CSS and JavaScript modules embedded in the
//! binary (`src/ui/`), so afw needs no Node build to build or to run it.
//!
//! Only the files in [`ASSETS`] are served, by exact name: nothing is read from disk and no
//! path is built from the request. Every answer carries a Content-Security-Policy that
//! allows only afw's own origin (scripts, styles, `fetch` and the WebSocket), no framing,
//! and an ETag so a reload revalidates cheaply. The pages hold no data: the UI reads it
//! through the API with the person's key, so these routes need none (the Host and Origin
//! rules still apply). This module must not serve anything but these files.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::hash::Fnv1a;

/// The policy every UI answer carries: same origin only (`connect-src 'self'` covers the
/// same-origin WebSocket), no inline script or style, no framing, no plugins.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("../ui/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the UI.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("live.js", JS),
    asset!("dom.js", JS),
    asset!("sessions.js", JS),
    asset!("session.js", JS),
    asset!("history.js", JS),
    asset!("health.js", JS),
];

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(index))
        .routes(routes!(file))
}

#[utoipa::path(
    get, path = "/ui", operation_id = "ui", tag = "ui",
    responses(
        (status = 200, description = "The UI's page", content_type = "text/html; charset=utf-8", body = String),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
    ),
)]
async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

#[utoipa::path(
    get, path = "/ui/{file}", operation_id = "uiFile", tag = "ui",
    params(("file" = String, Path, description = "One of the UI's files, e.g. app.js or style.css")),
    responses(
        (status = 200, description = "The file (JavaScript module, CSS or HTML)", content_type = "text/javascript; charset=utf-8", body = String),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 404, description = "Not one of the UI's files", body = crate::http::openapi::answers::ErrorBody),
    ),
)]
async fn file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&file, &headers)
}

fn etag(body: &str) -> String {
    use std::hash::Hasher;
    let mut h = Fnv1a::default();
    h.write(body.as_bytes());
    format!("\"{:016x}\"", h.finish())
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return super::error::ApiError::not_found(format!("No UI file '{name}'")).into_response();
    };
    let tag = etag(asset.body);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_pages_import_is_served() {
        for asset in ASSETS {
            for line in asset.body.lines() {
                let Some(rest) = line.split(" from \"./").nth(1) else {
                    continue;
                };
                let imported = rest.split('"').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|a| a.name == imported),
                    "{} imports {imported}, which is not served",
                    asset.name
                );
            }
        }
        let index = ASSETS[0].body;
        for href in ["/ui/style.css", "/ui/app.js"] {
            assert!(index.contains(href), "index.html does not load {href}");
        }
    }
}
