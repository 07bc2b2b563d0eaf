//! Proof that the ports are real seams: the production router runs inside a turmoil world
//! on turmoil sockets, a virtual clock and seeded ids, with a fixed seed and epoch.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use afw::app::{self, Ports};
use afw::config::Config;
use afw::ports::IdGen;
use afw_sim::client::{self, WsClient};
use afw_sim::ports::{SimClock, SimListener};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::EPOCH_MS;

async fn http(
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    Ok(client::http("afw:3001", method, path, body.as_ref()).await?)
}

/// The next text frame as JSON.
async fn next_text(ws: &mut WsClient) -> Result<Value, Box<dyn std::error::Error>> {
    loop {
        if let Message::Text(t) = ws.next().await.ok_or("socket closed")?? {
            return Ok(serde_json::from_str(t.as_str())?);
        }
    }
}

fn run(seed: u64) -> Vec<Value> {
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_millis(EPOCH_MS))
        .simulation_duration(Duration::from_secs(60))
        .build();
    sim.host("afw", move || async move {
        let ports = Ports {
            clock: Arc::new(SimClock::default()),
            ids: Arc::new(IdGen::from_seed(seed)),
            connector: Arc::new(afw::ports::TcpConnector),
            archive: None,
        };
        let app = app::build(Config::default(), ports)?;
        let listener = SimListener(turmoil::net::TcpListener::bind("0.0.0.0:3001").await?);
        app.serve(listener, std::future::pending()).await?;
        Ok(())
    });
    let frames = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = frames.clone();
    sim.client("dashboard", async move {
        let mut ws = client::ws_connect("afw:3001").await?;
        let hello = next_text(&mut ws).await?;
        assert_eq!(hello["type"], "subscription_confirmed");
        ws.send(Message::Text(json!({"type": "subscribe", "sessionId": "sim-1"}).to_string().into())).await?;
        let confirm = next_text(&mut ws).await?;
        assert_eq!(confirm["type"], "subscription_confirmed");

        tokio::time::sleep(Duration::from_secs(5)).await;
        for (i, kind) in ["session:started", "file:created", "session:ended"].iter().enumerate() {
            let ev = json!({"type": kind, "sessionId": "sim-1", "timestamp": EPOCH_MS + i as u64, "cwd": "/w"});
            let (status, body) = http("POST", "/api/events", Some(ev)).await?;
            assert_eq!(status, 201, "{body}");
            assert_eq!(body["seq"], i + 1);
        }
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(next_text(&mut ws).await?);
        }
        let (_, health) = http("GET", "/health", None).await?;
        got.push(health);
        let (_, session) = http("GET", "/api/sessions/sim-1", None).await?;
        got.push(session);
        *out.lock().unwrap() = got;
        Ok(())
    });
    sim.run().expect("simulation");
    frames.lock().unwrap().clone()
}

#[test]
fn the_production_router_serves_http_and_websocket_inside_turmoil() {
    let got = run(42);
    let seqs: Vec<u64> = got[..3]
        .iter()
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(got[0]["type"], "session:started");
    assert_eq!(got[0]["data"]["id"], got[0]["sessionId"]);
    // The server's clock is turmoil's virtual clock on the fixed epoch: 5 s in, plus the
    // simulated network latency of the requests.
    let health_ts = got[3]["timestamp"].as_str().unwrap();
    assert!(health_ts.starts_with("2026-11-20T14:00:0"), "{health_ts}");
    assert_eq!(got[3]["storage"], "memory");
    assert_eq!(got[4]["status"], "completed");
    // Same seed, same run: every client-visible value is identical.
    assert_eq!(run(42), got);
}
