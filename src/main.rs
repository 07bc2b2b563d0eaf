//! The `afw` server: production ports, configuration from flags and environment, logging,
//! and shutdown on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;

use afw::app::{self, Ports};
use afw::config::Config;
use axum::serve::ListenerExt;
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if config.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        biased;
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: no new connections; finishing requests");
}

/// mimalloc: fewer cycles per allocation and less fragmentation than the system allocator
/// under many small, short-lived allocations (JSON parsing). The benchmark baseline uses it
/// too, so the comparison stays fair.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    init_logging(&config);
    let addr = SocketAddr::new(config.host, config.port);
    let ports = Ports::production();
    let app = match app::build(config, ports) {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("afw: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        // Small WebSocket frames and responses must not wait for the peer's delayed ACK
        // (Nagle): that alone added up to 40 ms to event delivery.
        Ok(l) => l.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        }),
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot listen");
            eprintln!("afw: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(
        %addr,
        storage = app.backend(),
        instance = %app.state.shared().instance_id,
        "afw listening with {} storage",
        app.backend()
    );
    match app.serve(listener, shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server error");
            ExitCode::from(1)
        }
    }
}
