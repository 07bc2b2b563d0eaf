//! One accepted connection's byte stream, as the server sees it.
//!
//! [`EdgeIo`] wraps the socket to (a) hold the connection's slot under the connection cap
//! for as long as the socket lives — also after a WebSocket upgrade took it over — (b) note
//! when bytes arrive, for the header and idle timeouts, and (c) give hyper's own error
//! answers a JSON body. hyper answers a request head it cannot parse (400, 414, 431) by
//! itself, with an empty body; every answer afw builds has a JSON body, so a head with an
//! error status and `content-length: 0` can only be hyper's, and is rewritten. This module
//! must not parse requests or decide anything about them.

use crate::sync::lock;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

/// What a connection is doing, for its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for a request to begin, since this instant.
    Idle(tokio::time::Instant),
    /// A request head has begun to arrive at this instant and is not complete yet.
    Head(tokio::time::Instant),
    /// This many requests are being answered.
    Busy(usize),
}

/// Shared by a connection's socket wrapper, its service and its watchdog.
#[derive(Debug)]
pub(crate) struct Activity(Mutex<Phase>);

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self(Mutex::new(Phase::Idle(tokio::time::Instant::now()))))
    }

    fn update(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut phase = lock(&self.0);
        *phase = f(*phase);
    }

    pub(crate) fn phase(&self) -> Phase {
        *lock(&self.0)
    }

    fn bytes_read(&self) {
        self.update(|p| match p {
            Phase::Idle(_) => Phase::Head(tokio::time::Instant::now()),
            other => other,
        });
    }

    /// The service was handed a request (its head is complete).
    pub(crate) fn request_started(&self) {
        self.update(|p| match p {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        });
    }

    /// The service answered a request.
    pub(crate) fn request_done(&self) {
        self.update(|p| match p {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(tokio::time::Instant::now()),
        });
    }
}

pub(crate) struct EdgeIo<T> {
    inner: T,
    activity: Arc<Activity>,
    /// A rewritten error answer still to be written, and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl<T> EdgeIo<T> {
    pub(crate) fn new(
        inner: T,
        activity: Arc<Activity>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Self {
            inner,
            activity,
            pending: None,
            _slot: slot,
        }
    }
}

/// hyper's own answer to an unparsable head, given a JSON body; `None` for anything else.
pub(crate) fn json_error_answer(buf: &[u8]) -> Option<Vec<u8>> {
    // Cheap exit for every ordinary answer (this runs on each write).
    if !(buf.starts_with(b"HTTP/1.1 4") || buf.starts_with(b"HTTP/1.1 5")) {
        return None;
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let code: u16 = status_line
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    if code < 400 {
        return None;
    }
    let headers: Vec<&str> = lines.collect();
    if !headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case("content-length: 0"))
    {
        return None;
    }
    let message = match code {
        400 => "Malformed HTTP request",
        414 => "The request URI is too long",
        431 => "The request headers are too large",
        _ => "The request could not be read",
    };
    let body = format!(r#"{{"error":"{message}","status":{code}}}"#);
    let mut out = format!("{status_line}\r\n");
    for h in headers {
        let name = h.split(':').next().unwrap_or("").trim();
        if !name.eq_ignore_ascii_case("content-length")
            && !name.eq_ignore_ascii_case("content-type")
        {
            out.push_str(h);
            out.push_str("\r\n");
        }
    }
    out.push_str("content-type: application/json\r\n");
    out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&buf[head_end + 4..]);
    Some(bytes)
}

impl<T: AsyncRead + Unpin> AsyncRead for EdgeIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> EdgeIo<T> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            if *done == bytes.len() {
                self.pending = None;
                break;
            }
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EdgeIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        // hyper's automatic answers are only ever written while no request is being served.
        let busy = matches!(self.activity.phase(), Phase::Busy(_));
        if !busy && let Some(rewritten) = json_error_answer(buf) {
            self.pending = Some((rewritten, 0));
            // The caller's bytes are taken; what replaces them is written before anything
            // else (and on flush).
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    /// Vectored, as the socket is: hyper then writes head and body with one `writev`
    /// instead of copying them together. A head hyper wrote by itself comes first.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty());
        let maybe_error =
            first.is_some_and(|b| b.starts_with(b"HTTP/1.1 4") || b.starts_with(b"HTTP/1.1 5"));
        if maybe_error || self.pending.is_some() {
            let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            return self.poll_write(cx, &joined);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_empty_error_answers_are_rewritten() {
        let hyper_431 =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(json_error_answer(hyper_431).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("date: x") && head.contains("content-type: application/json"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "The request headers are too large");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        for not_ours in [
            &b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 20\r\n\r\n{\"error\":\"x\"}",
            b"HTTP/1.1 400 Bad Request\r\ncontent-len",
        ] {
            assert!(json_error_answer(not_ours).is_none());
        }
    }
}
