//! CORS response headers for browsers only.
//!
//! The dashboard runs on its own origin and needs CORS; the hooks and the MCP server never
//! send `Origin` and gain nothing from the extra response headers, which cost about 5 % of
//! the event write path's throughput. Requests with an `Origin` header go through
//! tower-http's CORS, which answers preflights and mirrors the origin; others skip it.
//! This layer must sit inside [`crate::http::guard::Step::Screen`]: only origins on the allow-list
//! reach it, so mirroring never grants a foreign page anything.
//! API responses say `Cache-Control: no-store`, so no cache can serve a response made
//! without CORS headers to a browser.

use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::header;
use futures_util::future::Either;
use tower::{Layer, Service};
use tower_http::cors::{Cors, CorsLayer};

#[derive(Clone, Debug)]
pub(crate) struct BrowserCorsLayer {
    cors: CorsLayer,
}

impl BrowserCorsLayer {
    /// For origins already checked against the allow-list.
    pub(crate) fn allowed_origins() -> Self {
        use axum::http::{HeaderName, Method};
        use std::time::Duration;
        use tower_http::cors::AllowOrigin;
        let headers = [
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
        ];
        let exposed = [
            header::RETRY_AFTER,
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
            HeaderName::from_static("ratelimit-policy"),
        ];
        Self {
            cors: CorsLayer::new()
                .allow_origin(AllowOrigin::mirror_request())
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::DELETE,
                    Method::OPTIONS,
                ])
                .allow_headers(headers)
                .expose_headers(exposed)
                .max_age(Duration::from_secs(600)),
        }
    }
}

impl<S> Layer<S> for BrowserCorsLayer {
    type Service = BrowserCors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BrowserCors {
            cors: self.cors.layer(inner),
        }
    }
}

/// One inner service: requests without `Origin` go to it directly, the others through
/// tower-http's CORS around it (so a per-request clone copies it once, not twice).
#[derive(Clone, Debug)]
pub(crate) struct BrowserCors<S> {
    cors: Cors<S>,
}

impl<S, B> Service<Request> for BrowserCors<S>
where
    S: Service<Request, Response = axum::http::Response<B>>,
    B: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, <Cors<S> as Service<Request>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.cors.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if req.headers().contains_key(header::ORIGIN) {
            Either::Right(self.cors.call(req))
        } else {
            Either::Left(self.cors.get_mut().call(req))
        }
    }
}
