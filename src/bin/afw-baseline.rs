//! The benchmark's floor: a minimal axum server whose one handler only parses the posted
//! JSON. `scripts/bench.sh` loads it exactly like afw, so the ratio of afw's throughput to
//! this one's says what afw's own work costs on this machine (where the load generator
//! shares the cores with the server).

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;

async fn parse_only(
    axum::Json(event): axum::Json<serde_json::Value>,
) -> (StatusCode, &'static str) {
    std::hint::black_box(event);
    (StatusCode::CREATED, r#"{"success":true}"#)
}

/// mimalloc: fewer cycles per allocation and less fragmentation than the system allocator
/// under many small, short-lived allocations (JSON parsing). The benchmark baseline uses it
/// too, so the comparison stays fair.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3101);
    let app = Router::new().route("/api/events", post(parse_only));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
