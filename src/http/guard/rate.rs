//! Per-client rate limits by route class, with `governor` (GCRA) on `tokio::time`.
//!
//! A client is its API key when it presented one, else its peer address, else (behind a
//! trusted proxy) the address `X-Forwarded-For` names. Each route class has its own rate
//! and burst. The limiter reads time only through [`TokioTime`], so the simulation's virtual
//! time drives it like everything else, and its state is a hash map with a fixed hasher
//! whose order nothing observes. The number of tracked clients is bounded. This module
//! decides; the 429 and its headers are built by the caller.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::config::Config;

/// Distinct clients tracked per class before idle ones are forgotten.
const MAX_CLIENTS: usize = 10_000;

/// What a request is, for its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteClass {
    /// Event writes: `POST /api/events`, `/api/events/batch`, terminal output.
    Events,
    /// Every other `GET`.
    Reads,
    /// Every other write: sessions, commands, acks, input.
    Writes,
    /// `GET /ws`: opening a WebSocket.
    WebSocket,
}

impl RouteClass {
    /// What one request of the class is, for messages.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Self::Events => "event write",
            Self::Reads => "read",
            Self::Writes => "write",
            Self::WebSocket => "WebSocket connection",
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ClientKey {
    /// The index of the API key it presented.
    ApiKey(usize),
    Addr(IpAddr),
    /// No address known (in-process requests in tests).
    Unknown,
}

/// `tokio::time` as governor's clock: virtual in tests and in the simulation.
#[derive(Debug, Clone)]
pub(crate) struct TokioTime {
    origin: tokio::time::Instant,
}

impl Clock for TokioTime {
    type Instant = Duration;

    fn now(&self) -> Duration {
        tokio::time::Instant::now().duration_since(self.origin)
    }
}

type Store = HashMapStateStore<ClientKey, crate::hash::FixedState>;
/// One client known in advance (an API key): lock-free state, no map.
type Direct = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    TokioTime,
    governor::middleware::NoOpMiddleware<Duration>,
>;
type Limiter =
    RateLimiter<ClientKey, Store, TokioTime, governor::middleware::NoOpMiddleware<Duration>>;

/// A refusal: how long until the client may try again, and the limit it hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    pub class: RouteClass,
    pub retry_after: Duration,
    /// The burst (requests allowed at once).
    pub limit: u32,
    /// Requests per second.
    pub rate: u32,
}

struct ClassLimit {
    limiter: Limiter,
    /// One limiter per configured API key, indexed like the keys.
    per_key: Vec<Direct>,
    rate: u32,
    burst: u32,
    last_retain_ms: AtomicU64,
}

pub(crate) struct RateLimits {
    clock: TokioTime,
    events: ClassLimit,
    reads: ClassLimit,
    writes: ClassLimit,
    websocket: ClassLimit,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimits")
    }
}

impl RateLimits {
    /// `None` when rate limiting is off. `keys`: how many API keys are configured.
    pub(crate) fn from_config(config: &Config, keys: usize) -> Option<Self> {
        if config.rate_limit_off {
            return None;
        }
        let clock = TokioTime {
            origin: tokio::time::Instant::now(),
        };
        let class = |rate: u32| {
            let rate = rate.max(1);
            let burst = rate.saturating_mul(config.rate_limit_burst_secs.max(1));
            let quota = Quota::per_second(NonZeroU32::MIN.saturating_add(rate - 1))
                .allow_burst(NonZeroU32::MIN.saturating_add(burst - 1));
            let store = Store::new(HashMap::with_hasher(Default::default()));
            ClassLimit {
                limiter: RateLimiter::new(quota, store, clock.clone()),
                per_key: (0..keys)
                    .map(|_| RateLimiter::direct_with_clock(quota, clock.clone()))
                    .collect(),
                rate,
                burst,
                last_retain_ms: AtomicU64::new(0),
            }
        };
        Some(Self {
            events: class(config.rate_limit_events),
            reads: class(config.rate_limit_reads),
            writes: class(config.rate_limit_writes),
            websocket: class(config.rate_limit_ws),
            clock,
        })
    }

    /// Counts one request of `class` for `client`; `Err` if it is over the limit.
    pub(crate) fn check(&self, class: RouteClass, client: &ClientKey) -> Result<(), Refused> {
        let limit = match class {
            RouteClass::Events => &self.events,
            RouteClass::Reads => &self.reads,
            RouteClass::Writes => &self.writes,
            RouteClass::WebSocket => &self.websocket,
        };
        let refused = |not_until: governor::NotUntil<Duration>| Refused {
            class,
            retry_after: not_until.wait_time_from(self.clock.now()),
            limit: limit.burst,
            rate: limit.rate,
        };
        if let ClientKey::ApiKey(i) = client
            && let Some(direct) = limit.per_key.get(*i)
        {
            return direct.check().map_err(refused);
        }
        if limit.limiter.len() >= MAX_CLIENTS {
            // Forget clients whose budget is whole again (at most once a second). If all of
            // them are active, let requests through uncounted rather than refuse clients
            // for others' sake; memory stays bounded either way.
            let now = self.clock.now().as_millis() as u64;
            let last = limit.last_retain_ms.load(Ordering::Relaxed);
            if now >= last + 1000 || last == 0 {
                limit.last_retain_ms.store(now.max(1), Ordering::Relaxed);
                limit.limiter.retain_recent();
            }
            if limit.limiter.len() >= MAX_CLIENTS {
                return Ok(());
            }
        }
        limit.limiter.check_key(client).map_err(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_client_gets_its_burst_then_its_rate() {
        let config = Config {
            rate_limit_writes: 2,
            rate_limit_burst_secs: 5,
            ..Config::default()
        };
        let limits = RateLimits::from_config(&config, 1).unwrap();
        let a = ClientKey::Addr([127, 0, 0, 1].into());
        let b = ClientKey::ApiKey(0);
        for _ in 0..10 {
            limits.check(RouteClass::Writes, &a).unwrap();
        }
        let refused = limits.check(RouteClass::Writes, &a).unwrap_err();
        assert_eq!(refused.limit, 10);
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        // Other clients (a key has its own budget) and other classes are not affected.
        for _ in 0..10 {
            limits.check(RouteClass::Writes, &b).unwrap();
        }
        assert!(limits.check(RouteClass::Writes, &b).is_err());
        limits.check(RouteClass::Reads, &a).unwrap();
        tokio::time::advance(Duration::from_millis(500)).await;
        limits.check(RouteClass::Writes, &a).unwrap();
        assert!(limits.check(RouteClass::Writes, &a).is_err());
    }

    #[test]
    fn off_by_flag() {
        let config = Config {
            rate_limit_off: true,
            ..Config::default()
        };
        assert!(RateLimits::from_config(&config, 0).is_none());
    }
}
