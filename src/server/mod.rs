//! Serving the router on any listener: connections, their cap and their timeouts.
//!
//! One task per connection runs hyper's HTTP/1.1 server with upgrades (the WebSocket),
//! beside a watchdog that closes the connection when a request head takes longer than the
//! header timeout to arrive, or when it sits idle (no request in flight, nothing received)
//! longer than the idle timeout; request bodies have their own deadline
//! ([`crate::http::guard`]). Connections beyond the cap are still accepted — so the kernel's
//! queue cannot fill up with them — but served by a small service that answers `/health`
//! and `/ready` as usual and everything else with 503, one request each, closed after a
//! few seconds whatever they do; past a second, small margin they are closed at once. Time comes from
//! `tokio::time` only, so the simulation runs this code as it is. This module must not
//! look into requests beyond their path.

pub(crate) mod io;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::http::error::ApiError;
use crate::http::guard::PeerAddr;
use io::{Activity, EdgeIo, Phase};

/// Connections served past the cap (with 503, `/health` and `/ready` answered).
const OVERFLOW: usize = 64;
/// How long an over-cap connection may stay open, whatever it does.
const OVERFLOW_TIMEOUT: Duration = Duration::from_secs(4);
/// Largest request head (start line and headers); larger ones get a JSON 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The connection limits of one server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long, once stopped, requests in flight may take to finish.
    pub grace: Duration,
}

impl Limits {
    pub(crate) fn from_config(config: &crate::config::Config) -> Self {
        Self {
            max_connections: config.max_connections.max(1),
            header_timeout: Duration::from_secs(config.header_timeout_secs),
            idle_timeout: Duration::from_secs(config.idle_timeout_secs),
            grace: Duration::from_secs(config.shutdown_grace_secs),
        }
    }
}

/// Accepts and serves connections until `stop` flips to `true`, then waits (up to the
/// grace period) for the connections being served to finish their requests, and cuts
/// those that have not; WebSocket tasks watch the same flag. Returns the end of the grace
/// period.
pub(crate) async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> tokio::time::Instant
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let overflow = Arc::new(Semaphore::new(OVERFLOW));
    let mut tasks = tokio::task::JoinSet::new();
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let (io, peer) = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connection tasks so the set stays as large as what is open.
        while tasks.try_join_next().is_some() {}
        let stop = stop.clone();
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                let router = router.clone();
                tasks.spawn(serve_one(io, peer, router, limits, Some(slot), stop));
            }
            Err(_) => {
                // Once per 10 s at most: a flood of connections must not flood the log.
                let now = tokio::time::Instant::now();
                if last_warning.is_none_or(|t| now >= t + Duration::from_secs(10)) {
                    last_warning = Some(now);
                    tracing::warn!(%peer, max = limits.max_connections, "connection cap reached; answering 503");
                }
                match Arc::clone(&overflow).try_acquire_owned() {
                    Ok(slot) => {
                        tasks.spawn(serve_overflow(io, router.clone(), slot));
                    }
                    Err(_) => drop(io),
                }
            }
        }
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + limits.grace;
    let finished = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout_at(deadline, finished).await.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            grace_secs = limits.grace.as_secs(),
            "shutdown grace period over: closing the connections still busy"
        );
        tasks.shutdown().await;
    }
    deadline
}

fn http1() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        // The watchdog times heads (hyper's own timer would also count the idle time).
        .header_read_timeout(None)
        .max_header_size(MAX_HEAD_BYTES);
    b
}

async fn serve_one<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let io = EdgeIo::new(io, Arc::clone(&activity), slot);
    let svc_activity = Arc::clone(&activity);
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let router = router.clone();
            let activity = Arc::clone(&svc_activity);
            activity.request_started();
            req.extensions_mut().insert(PeerAddr(peer));
            async move {
                let res = router.oneshot(req.map(Body::new)).await;
                activity.request_done();
                res
            }
        });
    let conn = http1()
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            biased;
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            expired = watchdog(&activity, limits) => {
                tracing::debug!(%peer, what = expired, "closing connection: timed out");
                return;
            }
        }
    }
}

/// Resolves when the connection has outlived one of its timeouts, naming it.
async fn watchdog(activity: &Activity, limits: Limits) -> &'static str {
    loop {
        let (deadline, what) = match activity.phase() {
            Phase::Idle(since) => (since + limits.idle_timeout, "idle"),
            Phase::Head(since) => (since + limits.header_timeout, "request head"),
            // A request in flight has its own bounds (body deadline, long-poll cap).
            Phase::Busy(_) => (
                tokio::time::Instant::now() + limits.header_timeout.max(limits.idle_timeout),
                "",
            ),
        };
        tokio::time::sleep_until(deadline).await;
        let now = tokio::time::Instant::now();
        let expired = match activity.phase() {
            Phase::Idle(since) => now >= since + limits.idle_timeout,
            Phase::Head(since) => now >= since + limits.header_timeout,
            Phase::Busy(_) => false,
        };
        if expired && !what.is_empty() {
            return what;
        }
    }
}

/// A connection past the cap: one request, `/health` and `/ready` as usual, else 503.
async fn serve_overflow<I>(io: I, router: Router, slot: tokio::sync::OwnedSemaphorePermit)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = EdgeIo::new(io, Activity::new(), Some(slot));
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let router = router.clone();
        async move {
            if matches!(req.uri().path(), "/health" | "/ready") {
                return router.oneshot(req.map(Body::new)).await;
            }
            Ok::<Response, Infallible>(overloaded())
        }
    });
    let conn = http1()
        .keep_alive(false)
        .serve_connection(TokioIo::new(io), service);
    let _ = tokio::time::timeout(OVERFLOW_TIMEOUT, conn).await;
}

fn overloaded() -> Response {
    let mut res = ApiError::Overloaded.into_response();
    res.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    res
}
