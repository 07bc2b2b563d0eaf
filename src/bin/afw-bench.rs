//! Load tools for `scripts/bench.sh` and `scripts/bench-archive.sh` that `oha` does not
//! cover: preloading events, WebSocket fan-out latency with many subscribers, and sessions
//! to archive. Targets loopback only and stops by
//! itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Parser)]
#[command(
    name = "afw-bench",
    about = "Benchmark helpers for afw (loopback only)"
)]
struct Cli {
    /// Server address (host:port), e.g. 127.0.0.1:3100.
    #[arg(long, default_value = "127.0.0.1:3100")]
    addr: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Grows the store to each size in STEPS sessions (one user per ten sessions) and times
    /// one page of each listing at that size: the cost of a page must not grow with it.
    Listing {
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        steps: Vec<usize>,
        #[arg(long, default_value_t = 200)]
        limit: usize,
        #[arg(long, default_value_t = 30)]
        repeat: usize,
    },
    /// Stores N copies of the fixture event in one session (batches of 1000).
    Preload {
        #[arg(long)]
        session: String,
        #[arg(long, default_value_t = 10_000)]
        events: usize,
        #[arg(long)]
        event_file: String,
    },
    /// Opens C subscribers to one session, posts E events and measures delivery latency.
    Fanout {
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        #[arg(long, default_value_t = 20)]
        events: usize,
        #[arg(long, default_value_t = 250)]
        interval_ms: u64,
        /// Server process id, to read its RSS while the clients are connected.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// POSTs events to one instance and times their arrival on a WebSocket client of
    /// another (or the same) instance.
    Latency {
        /// Instance the WebSocket client connects to (default: --addr).
        #[arg(long)]
        ws_addr: Option<String>,
        #[arg(long, default_value_t = 1000)]
        events: usize,
        #[arg(long, default_value_t = 2)]
        interval_ms: u64,
    },
    /// Writes continuously through a Redis outage: runs --kill-cmd after 2 s and
    /// --start-cmd 3 s later, and reports how fast errors and recovery came, and whether a
    /// subscriber missed any acknowledged event.
    Outage {
        #[arg(long)]
        kill_cmd: String,
        #[arg(long)]
        start_cmd: String,
    },
    /// Stores SESSIONS sessions of EVENTS - 1 events each (`session:started`, then terminal
    /// output), one batch per session, from CONCURRENCY keep-alive connections: sessions
    /// that one `session:ended` each (`archive-end`) completes.
    ArchivePreload {
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
        #[arg(long, default_value_t = 200)]
        events: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Ends every preloaded session (one `session:ended` each) and waits until the archive
    /// has a snapshot of each (`afw_archive_snapshots_total{outcome="created"}`), at most
    /// TIMEOUT_SECS: prints how long the ends and the archival took.
    ArchiveEnd {
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    /// Prints the resident set size of a process in MiB.
    Rss {
        #[arg(long)]
        pid: u32,
    },
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// One HTTP/1.1 POST on its own connection; returns the status code.
async fn post(addr: &str, path: &str, body: &str) -> std::io::Result<u16> {
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await?;
    let mut res = Vec::new();
    conn.read_to_end(&mut res).await?;
    let status = String::from_utf8_lossy(&res)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(status)
}

/// The unsigned integer that follows `key` in `text`.
/// A frame that is a stored event (sent as itself, with the server's `seq`), not a notice
/// or a protocol frame; found by a substring scan, as the frames are not parsed here.
fn is_event_frame(text: &str) -> bool {
    text.contains("\"seq\":") && !text.contains("\"subscription_confirmed\"")
}

fn field_u64(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Marks a `recovered: false` confirmation in a subscriber's stream.
const RESET: u64 = u64::MAX;

/// A minimal keep-alive HTTP/1.1 client (loopback benchmarks only).
struct KeepAlive {
    addr: String,
    conn: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl KeepAlive {
    async fn connect(addr: &str) -> std::io::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            addr: addr.to_owned(),
            conn: tokio::io::BufReader::new(stream),
        })
    }

    /// POSTs and returns the status code.
    async fn post(&mut self, path: &str, body: &str) -> std::io::Result<u16> {
        Ok(self.send("POST", path, body).await?.0)
    }

    /// GETs and returns the status code and the body.
    async fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        self.send("GET", path, "").await
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
    ) -> std::io::Result<(u16, Vec<u8>)> {
        use tokio::io::AsyncBufReadExt;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.conn.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        self.conn.read_line(&mut line).await?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            if self.conn.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        self.conn.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

async fn subscriber(
    addr: &str,
    session: &str,
) -> Result<mpsc::UnboundedReceiver<(u64, Instant)>, Box<dyn std::error::Error>> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await?;
    ws.send(Message::Text(
        json!({"type": "subscribe", "sessionId": session})
            .to_string()
            .into(),
    ))
    .await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut confirmed = 0;
    while confirmed < 2 {
        if let Some(Ok(Message::Text(t))) = ws.next().await
            && t.as_str().contains("\"subscription_confirmed\"")
        {
            confirmed += 1;
        }
    }
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                let at = Instant::now();
                if is_event_frame(t.as_str())
                    && let Some(n) = field_u64(t.as_str(), "\"n\":")
                {
                    let _ = tx.send((n, at));
                } else if t.as_str().contains("\"recovered\":false") {
                    let _ = tx.send((RESET, at));
                }
            }
        }
    });
    Ok(rx)
}

fn event_body(session: &str, n: usize) -> String {
    json!({"type": "file:modified", "sessionId": session, "timestamp": "2026-11-20T14:00:00.000Z", "n": n, "path": "/w/src/lib.rs"})
        .to_string()
}

async fn latency(
    addr: &str,
    ws_addr: &str,
    events: usize,
    interval: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let session = "latency-bench";
    let mut rx = subscriber(ws_addr, session).await?;
    let mut http = KeepAlive::connect(addr).await?;
    let mut sent = Vec::with_capacity(events);
    for n in 0..events {
        let body = event_body(session, n);
        sent.push(Instant::now());
        let status = http.post("/api/events", &body).await?;
        if status != 201 {
            return Err(format!("POST answered {status}").into());
        }
        tokio::time::sleep(interval).await;
    }
    let mut lat = Vec::with_capacity(events);
    let mut slow = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lat.len() < events {
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some((n, at))) if n != RESET => {
                let ms = at.duration_since(sent[n as usize]).as_secs_f64() * 1000.0;
                if ms > 2.0 {
                    slow.push((n, (ms * 10.0).round() / 10.0));
                }
                lat.push(ms);
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    if std::env::var_os("AFW_BENCH_VERBOSE").is_some() {
        eprintln!("events slower than 2 ms (n, ms): {slow:?}");
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "POST on {addr} -> WS on {ws_addr}: {} / {events} delivered; p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        lat.len(),
        percentile(&lat, 50.0),
        percentile(&lat, 90.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}

fn sh(cmd: &str) {
    let _ = std::process::Command::new("sh").arg("-c").arg(cmd).status();
}

async fn outage(
    addr: &str,
    kill_cmd: &str,
    start_cmd: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let session = "outage-bench";
    let mut rx = subscriber(addr, session).await?;
    let started = Instant::now();
    let (mut killed_at, mut restarted_at) = (None, None);
    let (mut first_error, mut first_ok_after) = (None, None);
    let (mut acked, mut errors, mut other) = (Vec::new(), 0usize, 0usize);
    let mut max_error_ms = 0f64;
    let mut n = 0usize;
    while started.elapsed() < Duration::from_secs(9) {
        if killed_at.is_none() && started.elapsed() >= Duration::from_secs(2) {
            sh(kill_cmd);
            killed_at = Some(Instant::now());
        }
        if restarted_at.is_none() && started.elapsed() >= Duration::from_secs(5) {
            sh(start_cmd);
            restarted_at = Some(Instant::now());
        }
        let t0 = Instant::now();
        let status = post(addr, "/api/events", &event_body(session, n))
            .await
            .unwrap_or(0);
        let took = t0.elapsed().as_secs_f64() * 1000.0;
        match status {
            201 => {
                acked.push(n);
                if restarted_at.is_some() && first_ok_after.is_none() {
                    first_ok_after = Some(Instant::now());
                }
            }
            503 => {
                errors += 1;
                max_error_ms = max_error_ms.max(took);
                if killed_at.is_some() && first_error.is_none() {
                    first_error = Some(Instant::now());
                }
            }
            _ => other += 1,
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut received = std::collections::BTreeSet::new();
    let mut resets = 0;
    while let Ok((i, _)) = rx.try_recv() {
        if i == RESET {
            resets += 1;
        } else {
            received.insert(i as usize);
        }
    }
    let lost = acked.iter().filter(|i| !received.contains(i)).count();
    let ms = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.0} ms", b.duration_since(a).as_secs_f64() * 1000.0),
        _ => "n/a".to_owned(),
    };
    println!(
        "outage: {n} writes, {} acknowledged (201), {errors} refused (503, slowest answer {max_error_ms:.0} ms), {other} other",
        acked.len()
    );
    println!(
        "outage: Redis killed -> first 503 after {}; Redis restarted -> first 201 after {}",
        ms(killed_at, first_error),
        ms(restarted_at, first_ok_after)
    );
    println!(
        "outage: acknowledged events the subscriber did not receive live: {lost}; \
         times it was told to reload (recovered:false): {resets}; lost silently: {}",
        if lost > 0 && resets == 0 { lost } else { 0 }
    );
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Adds sessions `from..to`, each one `session:started` (user `u<i / 10>`), 1000 a batch.
async fn add_sessions(
    conn: &mut KeepAlive,
    from: usize,
    to: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut i = from;
    while i < to {
        let n = (to - i).min(1000);
        let events: Vec<Value> = (i..i + n)
            .map(|k| {
                json!({"type": "session:started", "sessionId": format!("L{k}"),
                    "timestamp": "2026-11-20T14:00:00.000Z", "cwd": "/w", "user": format!("u{}", k / 10)})
            })
            .collect();
        let status = conn
            .post(
                "/api/events/batch",
                &json!({ "events": events }).to_string(),
            )
            .await?;
        if status != 201 {
            return Err(format!("batch answered {status}").into());
        }
        i += n;
    }
    Ok(())
}

/// Milliseconds of `repeat` GETs of `path`, sorted.
async fn timed(
    conn: &mut KeepAlive,
    path: &str,
    repeat: usize,
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let mut ms = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let started = Instant::now();
        let (status, _) = conn.get(path).await?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
        if status != 200 {
            return Err(format!("GET {path} answered {status}").into());
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

async fn listing(
    addr: &str,
    steps: &[usize],
    limit: usize,
    repeat: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = KeepAlive::connect(addr).await?;
    println!("| sessions stored | page | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    let mut have = 0;
    for &size in steps {
        let started = Instant::now();
        add_sessions(&mut conn, have, size).await?;
        have = size;
        eprintln!(
            "{size} sessions stored in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        // A page ten pages deep: follow the cursor there once, then time it.
        let mut deep = format!("/api/sessions?limit={limit}");
        for _ in 0..10 {
            let (_, body) = conn.get(&deep).await?;
            let v: Value = serde_json::from_slice(&body)?;
            match v["nextCursor"].as_str() {
                Some(c) => deep = format!("/api/sessions?limit={limit}&cursor={c}"),
                None => break,
            }
        }
        let user = format!("u{}", size / 20);
        let pages = [
            ("first page", format!("/api/sessions?limit={limit}")),
            ("10 pages deep", deep),
            (
                "status=in_progress",
                format!("/api/sessions?status=in_progress&limit={limit}"),
            ),
            (
                "user=one user",
                format!("/api/sessions?user={user}&limit={limit}"),
            ),
            ("users", format!("/api/users?limit={limit}")),
        ];
        for (what, path) in pages {
            let ms = timed(&mut conn, &path, repeat).await?;
            println!(
                "| {size} | {what} (limit {limit}) | {:.2} | {:.2} |",
                percentile(&ms, 50.0),
                percentile(&ms, 99.0)
            );
        }
    }
    Ok(())
}

async fn preload(
    addr: &str,
    session: &str,
    events: usize,
    file: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(file)?)?;
    event["sessionId"] = json!(session);
    let mut left = events;
    while left > 0 {
        let n = left.min(1000);
        let batch = json!({ "events": vec![event.clone(); n] }).to_string();
        let status = post(addr, "/api/events/batch", &batch).await?;
        if status != 201 {
            return Err(format!("batch answered {status}").into());
        }
        left -= n;
    }
    println!("preloaded {events} events into {session}");
    Ok(())
}

// Long on purpose: one benchmark scenario (connect the dashboards, post, wait for every
// frame, report the latencies) kept in one place so its measurement is read whole.
async fn fanout(
    addr: String,
    clients: usize,
    events: usize,
    interval: Duration,
    server_pid: Option<u32>,
) -> Result<(), Box<dyn std::error::Error>> {
    let session = "fanout-bench";
    let ready = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let handshakes = Arc::new(Semaphore::new(200));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (addr, ready, failed, tx, handshakes) = (
            addr.clone(),
            ready.clone(),
            failed.clone(),
            tx.clone(),
            handshakes.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Held until subscribed, so at most 200 handshakes are in flight.
            let mut permit = Some(handshakes.acquire_owned().await);
            let url = format!("ws://{addr}/ws");
            // Small buffers: 10 000 clients with the default 128 KiB each would cost the
            // machine (shared with the server) more than the server itself.
            let config = WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(0);
            let Ok((mut ws, _)) =
                tokio_tungstenite::connect_async_with_config(url, Some(config), false).await
            else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let sub = json!({"type": "subscribe", "sessionId": session}).to_string();
            if ws.send(Message::Text(sub.into())).await.is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let mut confirmed = 0;
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                let at = Instant::now();
                // A substring scan rather than a JSON parse per frame: this process shares
                // the cores with the server, so the client must stay cheap.
                let text = text.as_str();
                if text.contains("\"subscription_confirmed\"") {
                    confirmed += 1;
                    if confirmed == 2 {
                        permit.take();
                        ready.fetch_add(1, Ordering::Relaxed);
                    }
                } else if is_event_frame(text)
                    && let Some(n) = field_u64(text, "\"n\":")
                {
                    let _ = tx.send((n as usize, at));
                }
            }
        }));
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(120);
    while ready.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < clients {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connected = ready.load(Ordering::Relaxed);
    println!(
        "connected {connected}/{clients} subscribers in {:.1} s ({} failed)",
        started.elapsed().as_secs_f64(),
        failed.load(Ordering::Relaxed)
    );
    let rss_connected = server_pid.and_then(rss_mib);
    if let Some(rss) = rss_connected {
        println!("server RSS with {connected} WebSocket clients connected: {rss:.1} MiB");
    }

    let mut sent_at = Vec::with_capacity(events);
    for n in 0..events {
        let ev = json!({
            "type": "file:modified", "sessionId": session,
            "timestamp": "2026-11-20T14:00:00.000Z", "n": n, "path": "/w/src/lib.rs",
        })
        .to_string();
        sent_at.push(Instant::now());
        let status = post(&addr, "/api/events", &ev).await?;
        if status != 201 {
            return Err(format!("POST answered {status}").into());
        }
        tokio::time::sleep(interval).await;
    }
    let expected = connected * events;
    let mut latencies_ms = Vec::with_capacity(expected);
    let wait_until = Instant::now() + Duration::from_secs(30);
    while latencies_ms.len() < expected {
        match tokio::time::timeout_at(wait_until.into(), rx.recv()).await {
            Ok(Some((n, at))) => {
                if let Some(t0) = sent_at.get(n) {
                    latencies_ms.push(at.duration_since(*t0).as_secs_f64() * 1000.0);
                }
            }
            _ => break,
        }
    }
    latencies_ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "fan-out: {} events x {connected} subscribers: delivered {}/{expected}",
        events,
        latencies_ms.len()
    );
    println!(
        "fan-out latency (POST sent -> frame read by subscriber): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies_ms, 50.0),
        percentile(&latencies_ms, 90.0),
        percentile(&latencies_ms, 99.0),
        latencies_ms.last().copied().unwrap_or(f64::NAN)
    );
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// The id of preloaded session `i`.
fn archive_session(i: usize) -> String {
    format!("arch-{i:05}")
}

/// Runs `body(connection, i)` for every i in 0..n over `concurrency` keep-alive
/// connections; fails on the first non-2xx answer.
async fn each_session(
    addr: &str,
    n: usize,
    concurrency: usize,
    body: impl Fn(usize) -> (&'static str, String) + Send + Sync + 'static,
) -> Result<(), Box<dyn std::error::Error>> {
    let next = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(body);
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, body, addr) = (Arc::clone(&next), Arc::clone(&body), addr.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut conn = KeepAlive::connect(&addr).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, std::io::Error>(());
                }
                let (path, json) = body(i);
                let status = conn.post(path, &json).await?;
                if !(200..300).contains(&status) {
                    return Err(std::io::Error::other(format!("{path}: HTTP {status}")));
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn archive_preload(
    addr: &str,
    sessions: usize,
    events: usize,
    concurrency: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    each_session(addr, sessions, concurrency, move |i| {
        let id = archive_session(i);
        let mut batch = vec![json!({"type": "session:started", "sessionId": id,
            "timestamp": "2026-11-20T14:00:00.000Z", "cwd": "/work/project", "user": "bench"})];
        for k in 1..events.saturating_sub(1) {
            batch.push(json!({"type": "terminal:output", "sessionId": id,
                "timestamp": "2026-11-20T14:00:01.000Z", "stream": "stdout",
                "output": format!("line {k}: compiling afw v0.1.0 (/work/project), 42 tests passed\n")}));
        }
        ("/api/events/batch", json!({ "events": batch }).to_string())
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();
    let stored = sessions * events.saturating_sub(1);
    println!(
        "preloaded {sessions} sessions, {stored} events in {secs:.1} s ({:.0} events/s)",
        stored as f64 / secs
    );
    Ok(())
}

/// `afw_archive_snapshots_total{outcome="created"}` as `/metrics` says now.
async fn created(conn: &mut KeepAlive) -> std::io::Result<u64> {
    let (_, body) = conn.get("/metrics").await?;
    let text = String::from_utf8_lossy(&body);
    Ok(text
        .lines()
        .find(|l| l.starts_with("afw_archive_snapshots_total{outcome=\"created\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64)
}

async fn archive_end(
    addr: &str,
    sessions: usize,
    concurrency: usize,
    timeout: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut metrics = KeepAlive::connect(addr).await?;
    let before = created(&mut metrics).await?;
    let started = Instant::now();
    each_session(addr, sessions, concurrency, |i| {
        let ev = json!({"type": "session:ended", "sessionId": archive_session(i),
            "timestamp": "2026-11-20T14:05:00.000Z", "status": "completed", "reason": "done"});
        ("/api/events", ev.to_string())
    })
    .await?;
    let ended = started.elapsed().as_secs_f64();
    let target = before + sessions as u64;
    let mut now = before;
    while now < target && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = created(&mut metrics).await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let filed = now - before;
    println!(
        "ended {sessions} sessions in {ended:.1} s; archived {filed} of them in {secs:.1} s: \
         {:.0} sessions/s",
        filed as f64 / secs
    );
    if filed < sessions as u64 {
        return Err(format!("only {filed} of {sessions} archived within {timeout:?}").into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Preload {
            session,
            events,
            event_file,
        } => preload(&cli.addr, &session, events, &event_file).await,
        Cmd::Fanout {
            clients,
            events,
            interval_ms,
            server_pid,
        } => {
            fanout(
                cli.addr,
                clients,
                events,
                Duration::from_millis(interval_ms),
                server_pid,
            )
            .await
        }
        Cmd::Latency {
            ws_addr,
            events,
            interval_ms,
        } => {
            let ws_addr = ws_addr.unwrap_or_else(|| cli.addr.clone());
            latency(
                &cli.addr,
                &ws_addr,
                events,
                Duration::from_millis(interval_ms),
            )
            .await
        }
        Cmd::Outage {
            kill_cmd,
            start_cmd,
        } => outage(&cli.addr, &kill_cmd, &start_cmd).await,
        Cmd::Listing {
            steps,
            limit,
            repeat,
        } => listing(&cli.addr, &steps, limit, repeat).await,
        Cmd::ArchivePreload {
            sessions,
            events,
            concurrency,
        } => archive_preload(&cli.addr, sessions, events, concurrency).await,
        Cmd::ArchiveEnd {
            sessions,
            concurrency,
            timeout_secs,
        } => {
            let timeout = Duration::from_secs(timeout_secs);
            archive_end(&cli.addr, sessions, concurrency, timeout).await
        }
        Cmd::Rss { pid } => {
            match rss_mib(pid) {
                Some(rss) => println!("{rss:.1}"),
                None => return Err(format!("no process {pid}").into()),
            }
            Ok(())
        }
    }
}
