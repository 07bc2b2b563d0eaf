//! The `afw` server: production ports, configuration from flags and environment, logging,
//! and shutdown on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;

use afw::app::{self, Ports};
use afw::config::Config;
use axum::serve::{Listener, ListenerExt};
use clap::Parser;

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
}

/// Resolves at the first SIGTERM/SIGINT; a second one ends the process at once.
async fn drain_signal(grace_secs: u64) {
    shutdown_signal().await;
    tracing::info!(
        grace_secs,
        "shutting down: /ready answers 503, no new connections; finishing requests"
    );
    tokio::spawn(async {
        shutdown_signal().await;
        tracing::warn!("second signal: exiting without finishing requests");
        std::process::exit(130);
    });
}

/// mimalloc: fewer cycles per allocation and less fragmentation than the system allocator
/// under many small, short-lived allocations (JSON parsing). The benchmark baseline uses it
/// too, so the comparison stays fair.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Raises the soft open-file limit to the hard one, and keeps the connection cap (plus
/// WebSocket clients, which hold a connection each) below it with room for Redis
/// connections, logs and the listener.
fn fit_open_files(config: &mut Config) {
    const RESERVED: u64 = 128;
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            return;
        }
    };
    let room = soft.saturating_sub(RESERVED).max(16) as usize;
    if config.max_connections > room {
        tracing::warn!(
            open_files = soft,
            requested = config.max_connections,
            max_connections = room,
            "connection cap lowered to fit the open-file limit (raise it with ulimit -n)"
        );
        config.max_connections = room;
    }
}

fn warn_about_exposure(config: &Config, auth: bool) {
    if config.cors_origins.split(',').any(|o| o.trim() == "*") {
        tracing::warn!("AFW_CORS_ORIGINS=*: every web page the user opens may call afw");
    }
    if !config.host.is_loopback() && !auth {
        tracing::warn!(
            host = %config.host,
            "listening beyond loopback without an API key: anyone who can reach this port can read sessions and steer agents (set AFW_API_KEY)"
        );
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let log_guard = match afw::logs::init(&config) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("afw: {e}");
            return ExitCode::from(2);
        }
    };
    let code = run(config).await;
    let dropped = afw::logs::dropped_lines();
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "log lines dropped: the log writer could not keep up"
        );
    }
    drop(log_guard);
    code
}

async fn run(mut config: Config) -> ExitCode {
    fit_open_files(&mut config);
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
    let auth = app.state.requires_keys();
    warn_about_exposure(app.state.config(), auth);
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(
        %addr,
        storage = app.backend(),
        instance = %app.state.instance_id(),
        auth = if auth { "on" } else { "off" },
        archive = app.state.archiver().map_or("off", |a| a.archive().kind()),
        "afw listening on {addr} with {} storage, API keys {}",
        app.backend(),
        if auth { "required" } else { "not required" }
    );
    let grace = app.state.config().shutdown_grace_secs;
    match app.serve(listener, drain_signal(grace)).await {
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
