//! Load tools for `scripts/bench.sh` that `oha` does not cover: preloading events, and
//! WebSocket fan-out latency with many subscribers. Targets loopback only and stops by
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
fn field_u64(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
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
                } else if text.starts_with("{\"type\":\"event\"")
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
        Cmd::Rss { pid } => {
            match rss_mib(pid) {
                Some(rss) => println!("{rss:.1}"),
                None => return Err(format!("no process {pid}").into()),
            }
            Ok(())
        }
    }
}
