//! The ports the service core is written against, and their production adapters.
//!
//! Everything that differs between production, in-process tests and the turmoil simulation
//! comes in through here: the wall clock (timestamps only: durations and timers use
//! `tokio::time`, which tests pause and turmoil drives) and the seeded source of ids and
//! randomness. The inbound listener is axum's own `serve::Listener` trait; storage is
//! [`crate::storage::Store`]. Nothing in this module may read the OS clock or OS randomness
//! except the production adapters named as such.

pub(crate) mod tls;

use crate::sync::lock;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::{Rng, SeedableRng};
/// ChaCha12 from `rand_chacha`: a specified algorithm, so a seed replays the same ids after
/// a `rand` upgrade (`StdRng` promises no such thing).
type SeededRng = rand_chacha::ChaCha12Rng;

/// Wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// Production clock: the operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock anchored at a fixed epoch that advances with `tokio::time`.
///
/// Under a paused tokio runtime (tests) or inside turmoil it moves only when virtual time
/// does, so TTL expiry can be tested without waiting.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    epoch_ms: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Must be called inside a tokio runtime.
    pub fn starting_at(epoch_ms: u64) -> Self {
        Self {
            epoch_ms,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.epoch_ms + self.start.elapsed().as_millis() as u64
    }
}

/// The seeded source of generated ids and of any randomness the core needs.
///
/// One instance per process (or per simulated host). Seeded from the OS exactly once in
/// production, from the simulation seed elsewhere, so a seed replays the same ids.
#[derive(Debug)]
pub struct IdGen {
    rng: Mutex<SeededRng>,
}

impl IdGen {
    pub fn from_seed(seed: u64) -> Self {
        Self {
            rng: Mutex::new(SeededRng::seed_from_u64(seed)),
        }
    }

    /// Production only: one OS-seeded generator for the life of the process.
    pub fn from_os() -> Self {
        Self {
            rng: Mutex::new(rand::make_rng::<SeededRng>()),
        }
    }

    pub fn next_u64(&self) -> u64 {
        // A poisoned lock only means another thread panicked mid-draw; the RNG state is
        // still a valid RNG state, so keep going.
        let mut rng = lock(&self.rng);
        rng.next_u64()
    }

    /// Nine base-36 characters, the shape of the predecessor's `Math.random().toString(36)`.
    pub fn suffix(&self) -> String {
        let mut n = self.next_u64();
        let mut out = [0u8; 9];
        for slot in out.iter_mut().rev() {
            *slot = b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize];
            n /= 36;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// `<prefix>-<ms>-<base36>`, e.g. `cmd-1763647444148-k3j9x0a1b`.
    pub fn id(&self, prefix: &str, now_ms: u64) -> String {
        format!("{prefix}-{now_ms}-{}", self.suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_ids() {
        let a = IdGen::from_seed(42);
        let b = IdGen::from_seed(42);
        assert_eq!(a.id("cmd", 5), b.id("cmd", 5));
        assert_ne!(a.suffix(), IdGen::from_seed(43).suffix());
    }

    #[test]
    fn ids_have_the_predecessor_shape() {
        let id = IdGen::from_seed(1).id("session", 1_763_647_444_148);
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "session");
        assert_eq!(parts[1], "1763647444148");
        assert_eq!(parts[2].len(), 9);
        assert!(
            parts[2]
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        );
    }
}

/// A byte stream to a backend (Redis), whatever carries it.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

pub type BoxIo = Box<dyn Io>;

pub type ConnectFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<BoxIo>> + Send + 'a>>;

/// Outbound connections (to Redis). Production dials tokio TCP; the simulation dials
/// turmoil TCP. The Redis adapter never opens a socket any other way.
pub trait Connector: Send + Sync + 'static {
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> ConnectFuture<'a>;
}

/// Production connector: tokio TCP with `TCP_NODELAY`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> ConnectFuture<'a> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect((host, port)).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxIo)
        })
    }
}
