//! CORS for browsers only.
//!
//! The dashboard runs on its own origin and needs CORS; the hooks and the MCP server never
//! send `Origin` and gain nothing from the extra response headers, which cost about 5 % of
//! the event write path's throughput. Requests with an `Origin` header go through
//! tower-http's permissive CORS (as the predecessor allowed any origin); others skip it.
//! API responses say `Cache-Control: no-store`, so no cache can serve a response made
//! without CORS headers to a browser.

use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::header;
use futures_util::future::Either;
use tower::{Layer, Service};
use tower_http::cors::{Cors, CorsLayer};

#[derive(Clone, Debug)]
pub struct BrowserCorsLayer {
    cors: CorsLayer,
}

impl BrowserCorsLayer {
    pub fn permissive() -> Self {
        Self {
            cors: CorsLayer::permissive(),
        }
    }
}

impl<S: Clone> Layer<S> for BrowserCorsLayer {
    type Service = BrowserCors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BrowserCors {
            cors: self.cors.layer(inner.clone()),
            plain: inner,
        }
    }
}

#[derive(Clone, Debug)]
pub struct BrowserCors<S> {
    plain: S,
    cors: Cors<S>,
}

impl<S, B> Service<Request> for BrowserCors<S>
where
    S: Service<Request, Response = axum::http::Response<B>> + Clone,
    B: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, <Cors<S> as Service<Request>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.plain.poll_ready(cx) {
            Poll::Ready(Ok(())) => self.cors.poll_ready(cx),
            other => other,
        }
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if req.headers().contains_key(header::ORIGIN) {
            Either::Right(self.cors.call(req))
        } else {
            Either::Left(self.plain.call(req))
        }
    }
}
