//! The simulated clients' side of the wire: one HTTP/1.1 request per connection and a
//! WebSocket handshake, over turmoil sockets. Shared by the scenario's clients and the
//! turmoil seam test in `tests/api`.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub type WsClient = tokio_tungstenite::WebSocketStream<turmoil::net::TcpStream>;

/// Sends one request to `addr` (`host:port`) on a fresh connection: the status and the body
/// as JSON (`Null` when it is not JSON).
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let stream = turmoil::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost:3001")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .map_err(|e| e.to_string())?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = res.status().as_u16();
    let bytes = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Opens `ws://{addr}/ws`.
pub async fn ws_connect(addr: &str) -> Result<WsClient, String> {
    let stream = turmoil::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    // A fixed key: tungstenite's generator would use OS randomness.
    let req = hyper::Request::builder()
        .uri(format!("ws://{addr}/ws"))
        .header("host", "localhost:3001")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .map_err(|e| e.to_string())?;
    let (ws, _) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// The `seq` of a stored event's frame, read as the real dashboard reads frames: the frame
/// is the event itself, with a top-level event `type`, `sessionId` and `timestamp` (frames
/// without them are dropped), and the server's `seq`. `None` for the protocol's own frames
/// and for notices, which are not history.
pub fn event_seq(frame: &Value) -> Option<u64> {
    let kind = frame["type"].as_str()?;
    afw::domain::model::EventType::parse(kind)?;
    if !frame["sessionId"].is_string() || frame.get("timestamp").is_none_or(Value::is_null) {
        return None;
    }
    frame["seq"].as_u64()
}
