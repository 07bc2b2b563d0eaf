//! The edge of the HTTP API: who may talk to afw, and how much.
//!
//! Three layers wrap the router, in this order:
//! 1. [`Step::Screen`]: the `Host` rule (DNS rebinding) and the origin allow-list, for every
//!    request including the WebSocket upgrade and CORS preflights. Requests without
//!    `Origin` (hooks, the MCP server, curl) are not affected by the allow-list.
//! 2. CORS headers for allowed browser origins ([`crate::http::cors`]), so browsers can read
//!    the answers of the next step too.
//! 3. [`Step::Admit`]: API keys, rate limits, the announced body size (413 before anything is
//!    read, so `Expect: 100-continue` never gets a `100`), and a deadline on reading the body.
//!
//! `/health` and `/ready` need no key and are not rate limited (load balancers and probes
//! call them), nor do the UI's files under `/ui`. This module decides and answers refusals
//! through [`ApiError`]; it never reads bodies and knows routes only by their class.

pub(crate) mod auth;
pub(crate) mod origin;
pub(crate) mod rate;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use std::convert::Infallible;

use axum::extract::Request;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::future::Either;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tower::{Layer, Service};

use crate::config::Config;
use crate::http::AppState;
use crate::http::error::{ApiError, RateRefusal};
use auth::{Carrier, Keys, Presented};
use origin::{Hosts, Origins};
use rate::{ClientKey, RateLimits, RouteClass};

/// The peer address of the connection a request came on (set by [`crate::server`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub SocketAddr);

/// The edge rules of one instance, built once from its configuration.
#[derive(Debug)]
pub(crate) struct Guard {
    pub origins: Origins,
    pub hosts: Hosts,
    pub keys: Keys,
    /// `AFW_METRICS_KEY`, for `/metrics` only.
    pub metrics_key: Keys,
    pub limits: Option<RateLimits>,
    trusted_proxies: Vec<ipnet::IpNet>,
    max_body: u64,
    body_timeout: Duration,
}

/// A setting the guard cannot use.
#[derive(Debug, thiserror::Error)]
pub enum BadSetting {
    #[error("AFW_TRUSTED_PROXIES: '{0}' is not an IP address or CIDR block")]
    Proxy(String),
    #[error(transparent)]
    Key(#[from] auth::KeyTooLong),
}

impl Guard {
    pub(crate) fn from_config(config: &Config) -> Result<Self, BadSetting> {
        let mut trusted_proxies = Vec::new();
        for item in config.trusted_proxies.split(',').map(str::trim) {
            if item.is_empty() {
                continue;
            }
            let net = item
                .parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| BadSetting::Proxy(item.to_owned()))?;
            trusted_proxies.push(net);
        }
        let keys = Keys::new(config.api_key.as_ref(), config.api_keys.as_ref())?;
        let metrics_key = Keys::new(config.metrics_key.as_ref(), None)?;
        Ok(Self {
            metrics_key,
            origins: Origins::parse(&config.cors_origins),
            hosts: Hosts::new(&config.allowed_hosts, config.host.is_loopback()),
            limits: RateLimits::from_config(config, keys.count()),
            keys,
            trusted_proxies,
            max_body: config.max_body_bytes as u64,
            body_timeout: Duration::from_secs(config.body_timeout_secs),
        })
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: the peer, or behind trusted proxies the nearest untrusted
    /// address `X-Forwarded-For` names.
    fn client_addr(&self, req: &Request) -> Option<IpAddr> {
        let peer = req.extensions().get::<PeerAddr>()?.0.ip();
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        Some(
            forwarded
                .into_iter()
                .rev()
                .find(|ip| !self.is_trusted(*ip))
                .unwrap_or(peer),
        )
    }
}

/// `/health` and `/ready` (probes), and the UI's own files (they hold no data: the UI asks
/// for the key and reads everything through the API).
fn is_open_path(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/ui") || path.starts_with("/ui/")
}

/// `/metrics`: open, or behind its own key (`AFW_METRICS_KEY`), never the API keys; not
/// rate limited (a scraper calls it on a timer).
fn check_metrics_key(guard: &Guard, req: &Request) -> Result<(), ApiError> {
    if !guard.metrics_key.enabled() {
        return Ok(());
    }
    match auth::presented(req.headers(), None) {
        Presented::Key(key, _) if guard.metrics_key.check(&key).is_some() => Ok(()),
        Presented::Key(..) => Err(ApiError::Unauthorized(
            "The metrics key is not valid".into(),
        )),
        Presented::None => Err(ApiError::Unauthorized(
            "/metrics needs the metrics key: send Authorization: Bearer <AFW_METRICS_KEY>".into(),
        )),
    }
}

fn route_class(method: &Method, path: &str) -> RouteClass {
    match *method {
        Method::GET if path == "/ws" => RouteClass::WebSocket,
        Method::GET | Method::HEAD => RouteClass::Reads,
        Method::POST
            if path.starts_with("/api/events")
                || (path.starts_with("/api/terminal/") && path.ends_with("/output")) =>
        {
            RouteClass::Events
        }
        _ => RouteClass::Writes,
    }
}

fn is_ws_upgrade(req: &Request) -> bool {
    req.uri().path() == "/ws"
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Step 1: the `Host` rule and the origin allow-list.
fn screen(guard: &Guard, req: &Request) -> Result<(), ApiError> {
    let host = origin::host_header(req.headers());
    if !guard.hosts.allows(host) {
        return Err(ApiError::Forbidden(format!(
            "Host '{}' is not allowed: afw answers only to localhost, 127.0.0.1, [::1] and the names in AFW_ALLOWED_HOSTS",
            host.unwrap_or_default()
        )));
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !guard.origins.allows(origin, host) {
            return Err(ApiError::Forbidden(format!(
                "Origin '{origin}' is not allowed; add it to AFW_CORS_ORIGINS to let its pages use afw"
            )));
        }
    }
    Ok(())
}

type Answer<F> = Either<std::future::Ready<Result<Response, Infallible>>, F>;

/// Which step a [`Gate`] runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Step {
    /// Step 1: [`screen`].
    Screen,
    /// Step 3: [`check`], then the body deadline.
    Admit,
}

/// The layer of one step. Hand-written services (not `from_fn`): they run on every
/// request, and answer without boxing a future or cloning the inner service.
#[derive(Clone)]
pub(crate) struct GateLayer(pub AppState, pub Step);

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;
    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            state: self.0.clone(),
            step: self.1,
            inner,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Gate<S> {
    state: AppState,
    step: Step,
    inner: S,
}

impl<S> Service<Request> for Gate<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let guard = &self.state.shared().guard;
        let verdict = match self.step {
            Step::Screen => screen(guard, &req).map(|()| req),
            Step::Admit => {
                check(&self.state, &req).map(|()| with_body_deadline(req, guard.body_timeout))
            }
        };
        match verdict {
            Ok(req) => Either::Right(self.inner.call(req)),
            Err(e) => Either::Left(std::future::ready(Ok(e.into_response()))),
        }
    }
}

fn check(state: &AppState, req: &Request) -> Result<(), ApiError> {
    let guard = &state.shared().guard;
    let path = req.uri().path();
    if is_open_path(path) {
        return Ok(());
    }
    if path == "/metrics" {
        return check_metrics_key(guard, req);
    }
    let key = authenticate(guard, req)?;
    if let Some(limits) = &guard.limits {
        let client = match key {
            Some(i) => ClientKey::ApiKey(i),
            None => guard
                .client_addr(req)
                .map_or(ClientKey::Unknown, ClientKey::Addr),
        };
        limits
            .check(route_class(req.method(), path), &client)
            .map_err(|r| {
                ApiError::RateLimited(RateRefusal {
                    noun: r.class.noun(),
                    retry_after: r.retry_after,
                    limit: r.limit,
                    rate: r.rate,
                })
            })?;
    }
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > guard.max_body) {
        return Err(ApiError::PayloadTooLarge {
            limit: guard.max_body as usize,
        });
    }
    Ok(())
}

/// `Ok(Some(i))`: the request carries configured key `i`; `Ok(None)`: auth is off.
fn authenticate(guard: &Guard, req: &Request) -> Result<Option<usize>, ApiError> {
    if !guard.keys.enabled() {
        return Ok(None);
    }
    match auth::presented(req.headers(), req.uri().query()) {
        Presented::None => Err(ApiError::Unauthorized(
            "An API key is required: send Authorization: Bearer <key> or x-api-key".into(),
        )),
        Presented::Key(_, Carrier::Query) if !is_ws_upgrade(req) => {
            Err(ApiError::Unauthorized(
                "apiKey in the query is accepted only on the WebSocket upgrade; send Authorization: Bearer <key> or x-api-key".into(),
            ))
        }
        Presented::Key(key, _) => guard
            .keys
            .check(&key)
            .map(Some)
            .ok_or_else(|| ApiError::Unauthorized("The API key is not valid".into())),
    }
}

fn with_body_deadline(req: Request, timeout: Duration) -> Request {
    if req.body().is_end_stream() {
        return req;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    req.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            deadline,
            sleep: None,
            timeout,
        })
    })
}

/// The request body did not arrive within `AFW_BODY_TIMEOUT_SECS`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub(crate) struct BodyTimeout(pub Duration);

/// A request body that must arrive whole before its deadline. The timer is only set up
/// when the body is not there at once (the common small body never needs it).
struct DeadlineBody {
    inner: Body,
    deadline: tokio::time::Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(self.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body error is (caused by) the body deadline.
pub(crate) fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimeout>() {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_fall_into_classes() {
        assert_eq!(route_class(&Method::GET, "/ws"), RouteClass::WebSocket);
        assert_eq!(
            route_class(&Method::POST, "/api/events"),
            RouteClass::Events
        );
        assert_eq!(
            route_class(&Method::POST, "/api/events/batch"),
            RouteClass::Events
        );
        assert_eq!(
            route_class(&Method::POST, "/api/terminal/s/output"),
            RouteClass::Events
        );
        assert_eq!(
            route_class(&Method::GET, "/api/events/s"),
            RouteClass::Reads
        );
        assert_eq!(
            route_class(&Method::POST, "/api/sessions/s/input"),
            RouteClass::Writes
        );
        assert_eq!(
            route_class(&Method::DELETE, "/api/sessions/s"),
            RouteClass::Writes
        );
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let config = Config {
            trusted_proxies: "10.0.0.0/8, 192.168.1.1".into(),
            ..Config::default()
        };
        let guard = Guard::from_config(&config).unwrap();
        let req = |peer: [u8; 4], xff: &str| {
            let mut r = Request::builder()
                .header("x-forwarded-for", xff)
                .body(Body::empty())
                .unwrap();
            r.extensions_mut()
                .insert(PeerAddr(SocketAddr::from((peer, 4000))));
            r
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            guard.client_addr(&req([1, 2, 3, 4], "9.9.9.9")),
            ip("1.2.3.4")
        );
        assert_eq!(
            guard.client_addr(&req([10, 0, 0, 7], "9.9.9.9, 8.8.8.8, 10.1.1.1")),
            ip("8.8.8.8")
        );
        assert_eq!(
            guard.client_addr(&req([192, 168, 1, 1], "junk")),
            ip("192.168.1.1")
        );
        let bad = Config {
            trusted_proxies: "nope".into(),
            ..Config::default()
        };
        assert!(Guard::from_config(&bad).is_err());
    }
}
