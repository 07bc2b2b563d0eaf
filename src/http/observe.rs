//! Watching every request go by: its request id, its metrics and its one log line.
//!
//! Outside in: [`request_ids`] keeps a well-formed `x-request-id` from the client or draws
//! one from the instance's [`IdGen`]; tower-http's trace layer opens a span carrying it and
//! logs one line per request from [`LogLine`]; the id is copied to the response; [`Observe`]
//! times the request on `tokio::time` (so the simulation's logs stay deterministic) and
//! counts it by route template and status. The route template and the session come up from
//! inside the router on the response ([`TagLayer`]); a refusal comes up from the one error
//! mapping ([`Refused`]). Nothing here may read a body, a query string or a header other
//! than `x-request-id`: no key, password or payload reaches a log line.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use tower::{Layer, Service};
use tower_http::request_id::{MakeRequestId, RequestId};
use tower_http::trace::{MakeSpan, OnResponse};
use tracing::Span;

use crate::metrics::{
    ClassLabels, Metrics, ReasonLabels, RequestLabels, RouteLabels, method_label,
};
use crate::ports::IdGen;

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// A client's `x-request-id` is kept when it is 1–128 of `[A-Za-z0-9._:-]`; else replaced.
const MAX_REQUEST_ID: usize = 128;

/// Found by the router: which route answered, and for which session.
#[derive(Debug, Clone)]
pub(crate) struct RouteTag {
    pub route: &'static str,
    pub session: Option<String>,
}

/// Set by a handler whose session is in the body (`POST /api/events`), not the path.
#[derive(Debug, Clone)]
pub(crate) struct SessionOf(pub String);

/// Set by the error mapping on a response that refuses the request: why, and for a rate
/// limit, which class of requests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused {
    pub reason: &'static str,
    pub class: Option<&'static str>,
}

/// Set by [`Observe`]: what the request log line reports.
#[derive(Debug, Clone, Copy)]
struct Observed {
    method: &'static str,
    elapsed: Duration,
}

/// Inside the router (a route layer): tags the response with the route template and the
/// session named by the path, or else by the handler ([`SessionOf`]).
#[derive(Clone, Copy)]
pub(crate) struct TagLayer;

impl<S> Layer<S> for TagLayer {
    type Service = Tag<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Tag(inner)
    }
}

#[derive(Clone)]
pub(crate) struct Tag<S>(S);

impl<S> Service<Request> for Tag<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Tagged<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let tag = req.extensions().get::<MatchedPath>().map(|m| RouteTag {
            route: template(m.as_str()),
            session: session_in_path(m.as_str(), req.uri().path()),
        });
        Tagged {
            inner: self.0.call(req),
            tag,
        }
    }
}

pin_project_lite::pin_project! {
    /// A route's answer, tagged when it is ready (a future of its own rather than a boxed
    /// `async` block: this runs on every request).
    pub(crate) struct Tagged<F> {
        #[pin]
        inner: F,
        tag: Option<RouteTag>,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Tagged<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut res) = std::task::ready!(this.inner.poll(cx));
        if let Some(mut tag) = this.tag.take() {
            if tag.session.is_none() {
                tag.session = res.extensions_mut().remove::<SessionOf>().map(|s| s.0);
            }
            res.extensions_mut().insert(tag);
        }
        Poll::Ready(Ok(res))
    }
}

/// A matched route's template, borrowed from the one list of routes rather than copied:
/// every request's labels and log line hold it, so it costs no allocation. The list is
/// the routes' own (their OpenAPI paths are the router's templates), built once per process.
fn template(matched: &str) -> &'static str {
    static TEMPLATES: OnceLock<Vec<String>> = OnceLock::new();
    let all = TEMPLATES.get_or_init(|| {
        let mut all: Vec<String> = crate::http::routes()
            .into_openapi()
            .paths
            .paths
            .into_keys()
            .collect();
        all.sort();
        all
    });
    all.binary_search_by(|t| t.as_str().cmp(matched))
        .map_or(UNMATCHED, |at| all[at].as_str())
}

/// The route label of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// The session a path names: the segment under `{session_id}`, or under `{id}` in the
/// routes whose `{id}` is a session (`/api/sessions/{id}...`, `/api/commands/{id}/commands`).
fn session_in_path(template: &str, path: &str) -> Option<String> {
    let is_session = |seg: &str| {
        seg == "{session_id}"
            || (seg == "{id}"
                && (template.starts_with("/api/sessions/")
                    || template == "/api/commands/{id}/commands"))
    };
    let at = template.split('/').position(is_session)?;
    let seg = path.split('/').nth(at)?;
    (!seg.is_empty()).then(|| seg.chars().take(MAX_REQUEST_ID).collect())
}

fn well_formed(id: &HeaderValue) -> bool {
    let b = id.as_bytes();
    (1..=MAX_REQUEST_ID).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

/// Draws request ids from the instance's seeded generator.
#[derive(Clone)]
pub(crate) struct DrawIds(pub Arc<IdGen>);

impl MakeRequestId for DrawIds {
    fn make_request_id<B>(&mut self, _req: &axum::http::Request<B>) -> Option<RequestId> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.0.next_u64();
        let mut id = [0u8; 16];
        for (at, digit) in id.iter_mut().enumerate() {
            *digit = HEX[(n >> (60 - 4 * at)) as usize & 0xf];
        }
        HeaderValue::from_bytes(&id).ok().map(RequestId::new)
    }
}

/// Drops a malformed client `x-request-id` (too long, odd characters), so one is drawn.
pub(crate) fn request_ids(mut req: Request) -> Request {
    if req
        .headers()
        .get(&REQUEST_ID)
        .is_some_and(|v| !well_formed(v))
    {
        req.headers_mut().remove(&REQUEST_ID);
    }
    req
}

/// The span of one request: its id (every line logged while serving it carries it).
#[derive(Clone, Copy)]
pub(crate) struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &axum::http::Request<B>) -> Span {
        let id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::info_span!("request", id)
    }
}

/// The one line per request. Probes and scrapes (`/health`, `/ready`, `/metrics`) log at
/// debug, everything else at info.
#[derive(Clone, Copy)]
pub(crate) struct LogLine;

impl<B> OnResponse<B> for LogLine {
    fn on_response(self, res: &axum::http::Response<B>, _latency: Duration, _span: &Span) {
        // tower-http's latency is read from the OS clock; the observer's is on the
        // injected time.
        let Some(seen) = res.extensions().get::<Observed>() else {
            return;
        };
        let tag = res.extensions().get::<RouteTag>();
        let route = tag.map_or(UNMATCHED, |t| t.route);
        let session = tag.and_then(|t| t.session.as_deref()).unwrap_or("");
        let request_id = res
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let status = res.status().as_u16();
        let latency_us = u64::try_from(seen.elapsed.as_micros()).unwrap_or(u64::MAX);
        // Fields only, no message repeating them (the pretty format writes plain values
        // unquoted: `crate::logs::PlainFields`).
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    target: "afw::request",
                    method = seen.method,
                    route,
                    status,
                    latency_us,
                    request_id,
                    session,
                )
            };
        }
        if matches!(route, "/health" | "/ready" | "/metrics") {
            line!(debug);
        } else {
            line!(info);
        }
    }
}

/// Times and counts every request.
#[derive(Clone)]
pub(crate) struct ObserveLayer(pub Arc<Metrics>);

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: Arc::clone(&self.0),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        Timed {
            started: tokio::time::Instant::now(),
            method: method_label(req.method().as_str()),
            metrics: Arc::clone(&self.metrics),
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request being answered: counted and stamped with its latency when the answer is
    /// ready.
    pub(crate) struct Timed<F> {
        #[pin]
        inner: F,
        started: tokio::time::Instant,
        method: &'static str,
        metrics: Arc<Metrics>,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Timed<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut res) = std::task::ready!(this.inner.poll(cx));
        let elapsed = this.started.elapsed();
        count(this.metrics, this.method, &res, elapsed);
        res.extensions_mut().insert(Observed {
            method: this.method,
            elapsed,
        });
        Poll::Ready(Ok(res))
    }
}

fn count(metrics: &Metrics, method: &'static str, res: &Response, elapsed: Duration) {
    let route = res
        .extensions()
        .get::<RouteTag>()
        .map_or(UNMATCHED, |t| t.route);
    let http = &metrics.http;
    http.latency
        .get_or_create(&RouteLabels { method, route })
        .observe(elapsed.as_secs_f64());
    http.requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: res.status().as_u16(),
        })
        .inc();
    if let Some(refused) = res.extensions().get::<Refused>() {
        let reason = ReasonLabels {
            reason: refused.reason,
        };
        http.refused.get_or_create(&reason).inc();
        if let Some(class) = refused.class {
            http.rate_limited
                .get_or_create(&ClassLabels { class })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_is_read_from_the_path_where_the_template_names_one() {
        let s = |t: &str, p: &str| session_in_path(t, p);
        assert_eq!(
            s("/api/sessions/{id}", "/api/sessions/s1").as_deref(),
            Some("s1")
        );
        assert_eq!(
            s("/api/sessions/{id}/input", "/api/sessions/s1/input").as_deref(),
            Some("s1")
        );
        assert_eq!(
            s("/api/events/{session_id}/recent", "/api/events/s2/recent").as_deref(),
            Some("s2")
        );
        assert_eq!(
            s("/api/commands/{id}/commands", "/api/commands/s3/commands").as_deref(),
            Some("s3")
        );
        // A command id is not a session.
        assert_eq!(s("/api/commands/{id}/ack", "/api/commands/c1/ack"), None);
        assert_eq!(
            s("/api/users/{user_id}/sessions", "/api/users/u/sessions"),
            None
        );
        assert_eq!(s("/health", "/health"), None);
    }

    #[test]
    fn only_well_formed_request_ids_are_kept() {
        let ok = |v: &str| well_formed(&HeaderValue::from_str(v).unwrap());
        assert!(ok("abc-123_x.y:z"));
        assert!(!ok(""));
        assert!(!ok("has space"));
        assert!(!ok("quote\"d"));
        assert!(!ok(&"a".repeat(129)));
        assert!(ok(&"a".repeat(128)));
    }
}
