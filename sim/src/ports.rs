//! The simulation's ports: turmoil sockets and a virtual wall clock, so the production
//! router, Redis adapter and Pub/Sub bridge run unchanged inside turmoil.

use std::net::SocketAddr;
use std::time::Duration;

use afw::ports::{BoxIo, Clock, ConnectFuture, Connector};

/// Wall clock: turmoil's virtual time since the simulation's fixed epoch.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimClock;

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        turmoil::since_epoch()
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// Inbound connections of a simulated host.
pub struct SimListener(pub turmoil::net::TcpListener);

impl axum::serve::Listener for SimListener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(pair) => return pair,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Outbound connections over the simulated network (host names resolve in turmoil).
#[derive(Debug, Default, Clone, Copy)]
pub struct SimConnector;

impl Connector for SimConnector {
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> ConnectFuture<'a> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(format!("{host}:{port}")).await?;
            Ok(Box::new(stream) as BoxIo)
        })
    }
}
