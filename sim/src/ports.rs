//! The simulation's ports: turmoil sockets and a virtual wall clock, so the production
//! router, Redis adapter and Pub/Sub bridge run unchanged inside turmoil.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use afw::ports::{BoxIo, Clock, ConnectFuture, Connector};

/// Wall clock: turmoil's virtual time since the simulation's fixed epoch, plus the clock
/// jumps the scenario made.
///
/// A jump moves the wall clock (what afw's `Clock` port and the simulated Redis's TTLs
/// read) without stepping through the time in between: a day of idleness costs nothing to
/// simulate. It is also a real fault: a suspended VM or laptop, or an NTP step, moves the
/// wall clock while tokio's monotonic timers stand still. Clones share their jumps, so one
/// jump moves every instance's clock and Redis's at once.
#[derive(Debug, Default, Clone)]
pub struct SimClock {
    jumped_ms: Arc<AtomicU64>,
}

impl SimClock {
    /// Moves the wall clock forward by `by`, for every clone of this clock.
    pub fn jump(&self, by: Duration) {
        self.jumped_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// The total of every jump so far.
    pub fn jumped(&self) -> Duration {
        Duration::from_millis(self.jumped_ms.load(Ordering::SeqCst))
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        turmoil::since_epoch()
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
            + self.jumped_ms.load(Ordering::SeqCst)
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
