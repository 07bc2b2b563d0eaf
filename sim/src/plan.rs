//! What a seed decides before anything runs: how many instances, hooks and dashboards, the
//! fault schedule, and the timeline every actor keeps to (workload, fault window, settle,
//! final checks).
//!
//! Drawing only: nothing here may run a host, step the simulation or record.

use std::time::Duration;

use rand::{RngExt, SeedableRng};

/// A specified generator (ChaCha12), so seeds replay across `rand` releases.
pub(crate) type SeededRng = rand_chacha::ChaCha12Rng;

/// 2026-11-20T14:00:00Z: every run starts at the same instant.
pub const EPOCH_MS: u64 = 1_795_183_200_000;
/// Simulated time per turmoil step.
pub(crate) const TICK_MS: u64 = 5;
/// Longest a client waits for one answer before calling it a hang.
pub const REQUEST_BOUND: Duration = Duration::from_secs(5);
/// Faults happen in this window; afterwards everything heals.
pub(crate) const FAULT_WINDOW: (u64, u64) = (3_000, 25_000);
/// Hooks stop posting here; the settle phase follows.
pub(crate) const WORKLOAD_END_MS: u64 = 30_000;
/// The final checks start here (every fault healed long before).
pub(crate) const FINAL_CHECK_MS: u64 = 45_000;
/// afw's real TTLs (24 h, 5 min). The checker reaches them by clock jumps
/// ([`crate::ports::SimClock::jump`]): a day of idleness costs no simulation steps.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(afw::config::DEFAULT_SESSION_TTL_SECS);
pub(crate) const QUEUE_TTL: Duration = Duration::from_secs(afw::config::DEFAULT_QUEUE_TTL_SECS);
/// Every hook session's activity (hooks, commander, input) lies within this stretch of
/// stepped time: hooks start at 2 s, and no client writes to them after
/// `RETRY_END_MS + REQUEST_BOUND`.
pub(crate) const SESSION_ACTIVITY_MS: (u64, u64) = (2_000, RETRY_END_MS + 5_000);
/// Frames an instance queues for one WebSocket client before disconnecting it.
pub(crate) const WS_SEND_QUEUE: usize = 16;
/// How long the slow dashboard takes per frame while the hooks are busy.
pub(crate) const SLOW_READ_MS: u64 = 400;
/// afw's WebSocket heartbeat in this scenario, and the silence after which a dashboard
/// gives a connection up for dead and reconnects: the real dashboard closes the socket when
/// nothing arrives for 30 s against afw's default 20 s heartbeat; scaled so a run stays
/// short. A crashed instance may never send its FIN (a machine that loses power does not),
/// and this is how a client notices.
pub(crate) const WS_HEARTBEAT_SECS: u64 = 5;
pub(crate) const DASHBOARD_SILENCE: Duration = Duration::from_millis(WS_HEARTBEAT_SECS * 1_500);
/// Seconds between the instances' archive sweeps (afw's default is 60): short, so the
/// checker's waits near the TTL stay short.
pub(crate) const ARCHIVE_SWEEP_SECS: u64 = 2;
/// How long the checker lets the sweepers archive what is near its TTL: a few sweeps and
/// a retry of a failed write (afw backs off from 1 s).
pub(crate) const ARCHIVE_SETTLE: Duration = Duration::from_secs(8);
/// Hooks give up retrying a write after this.
pub(crate) const RETRY_END_MS: u64 = WORKLOAD_END_MS + 5_000;
pub(crate) fn instance_name(i: usize) -> String {
    format!("afw{i}")
}

#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Redis dies and comes back empty.
    RedisCrashLoseData,
    /// Redis dies and comes back with its data (AOF).
    RedisCrashKeepData,
    /// Instance i cannot reach Redis, both ways.
    Partition(usize),
    /// Instance i's packets to Redis are dropped, Redis's replies still arrive.
    PartitionToRedis(usize),
    /// Instance i crashes and restarts.
    InstanceCrash(usize),
    /// The link between instance i and Redis holds every packet (both ways) until it heals,
    /// then delivers them: connections survive, requests stall (a network blip).
    Hold(usize),
    /// Every packet between instance i and Redis takes this many milliseconds (a latency
    /// spike; beyond afw's Redis timeout, writes fail with 503 and may still land).
    Latency(usize, u64),
    /// Redis stops serving while the fault lasts, with every connection open (`DEBUG
    /// SLEEP`, a `SIGSTOP`): commands sent meanwhile run when it wakes, after their
    /// clients may have given up (503 and still stored).
    RedisStall,
    /// Redis closes every Pub/Sub connection (`CLIENT KILL TYPE pubsub`); the bridges
    /// redial at once, and what was published in between is lost to them.
    KillPubsub,
    /// Redis is full (`maxmemory` under `noeviction`) while the fault lasts: writes answer
    /// `OOM` (afw: 503), reads, pops and claims still run.
    RedisFull,
    /// The archive host is down (a crash): every archive call fails, and a write whose
    /// answer was on its way is committed with its answer lost.
    ArchiveDown,
    /// Every archive call answers this many milliseconds late.
    ArchiveSlow(u64),
}

impl FaultKind {
    /// What the fault acts on: two faults on one target must not overlap (healing one
    /// would end the other early).
    fn target(&self) -> (u8, usize) {
        match self {
            Self::RedisCrashLoseData
            | Self::RedisCrashKeepData
            | Self::RedisStall
            | Self::RedisFull => (0, 0),
            Self::KillPubsub => (3, 0),
            Self::ArchiveDown | Self::ArchiveSlow(_) => (4, 0),
            Self::Partition(i)
            | Self::PartitionToRedis(i)
            | Self::Hold(i)
            | Self::Latency(i, _) => (1, *i),
            Self::InstanceCrash(i) => (2, *i),
        }
    }

    /// The instances this fault cuts off from Redis while it lasts (every request they
    /// serve then needs a 503), or `None` if it cuts off none.
    pub fn cuts_off(&self, instances: usize) -> Option<Vec<usize>> {
        match self {
            Self::RedisCrashLoseData | Self::RedisCrashKeepData => Some((0..instances).collect()),
            Self::Partition(i) | Self::PartitionToRedis(i) => Some(vec![*i]),
            Self::InstanceCrash(_)
            | Self::Hold(_)
            | Self::Latency(..)
            | Self::RedisStall
            | Self::KillPubsub
            | Self::RedisFull
            | Self::ArchiveDown
            | Self::ArchiveSlow(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub at_ms: u64,
    pub heal_after_ms: u64,
    pub kind: FaultKind,
}

/// Liveness mode: a fault that never heals, begun by the checker once everything else was
/// read (so the other invariants keep their final reads).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Forever {
    /// Instance i is cut off from Redis for good, both ways.
    Cut(usize),
    /// Redis goes down and never comes back.
    RedisDown,
}

impl Forever {
    pub fn kind(self) -> FaultKind {
        match self {
            Self::Cut(i) => FaultKind::Partition(i),
            Self::RedisDown => FaultKind::RedisCrashKeepData,
        }
    }

    /// Whether instance i can no longer reach Redis.
    pub fn cuts_off(self, i: usize) -> bool {
        match self {
            Self::Cut(c) => c == i,
            Self::RedisDown => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub seed: u64,
    pub instances: usize,
    pub hooks: usize,
    pub events_per_hook: usize,
    pub dashboards: usize,
    /// Dashboard reconnects (with `after`) at these times, for dashboard `usize`.
    pub reconnects: Vec<(usize, u64)>,
    pub faults: Vec<Fault>,
    /// A dashboard that reads slower than events arrive while the hooks are busy: its
    /// instance disconnects it (1013) when its send queue fills, and it resumes with `after`.
    pub slow_dashboard: Option<usize>,
    /// Input items a dashboard queues for the hook sessions; when there are any, every hook
    /// session has an input poller (the input-inject hook's long polls).
    pub inputs: usize,
    /// A hook that posts its last event while fault `usize` (an instance↔Redis partition)
    /// lasts and then goes quiet for good: nothing later repairs what the cut-off
    /// instance's dashboards missed, except the resync after its re-subscribe.
    pub quiet_hook: Option<(usize, usize)>,
    /// A long poll on the instance that fault `usize` (a partition) cuts off, waiting from
    /// just before the fault to after it heals, for input queued through another instance
    /// meanwhile: its Pub/Sub wake-up is lost with the link. See [`Plan::waiter_faults`].
    pub waiter: Option<usize>,
    /// Liveness mode (see [`Forever`]).
    pub forever: Option<Forever>,
    /// Scratch sessions the cleaner posts, then deletes during the run (`gone-K`).
    pub deletes: usize,
}

/// Whether `f` would overlap a fault of `kept` on the same target (healing one would end
/// the other early).
fn clashes(kept: &[Fault], f: &Fault) -> bool {
    kept.iter().any(|k| {
        k.kind.target() == f.kind.target()
            && f.at_ms < k.at_ms + k.heal_after_ms + 200
            && k.at_ms < f.at_ms + f.heal_after_ms + 200
    })
}

/// Adds the faults of `extra` that clash with none, in time order, keeping the indices
/// `quiet_hook` and `waiter` pointing at the same faults.
fn with_extra(
    mut faults: Vec<Fault>,
    extra: Vec<Fault>,
    quiet_hook: Option<(usize, usize)>,
    waiter: Option<usize>,
) -> (Vec<Fault>, Option<(usize, usize)>, Option<usize>) {
    let quiet = quiet_hook.map(|(h, f)| (h, faults[f].clone()));
    let wait = waiter.map(|f| faults[f].clone());
    for f in extra {
        if !clashes(&faults, &f) {
            faults.push(f);
        }
    }
    faults.sort_by_key(|f| f.at_ms);
    let index = |f: &Fault| faults.iter().position(|g| g == f);
    let quiet_hook = quiet.and_then(|(h, f)| Some((h, index(&f)?)));
    let waiter = wait.and_then(|f| index(&f));
    (faults, quiet_hook, waiter)
}

impl Plan {
    // Long on purpose: every draw from the seed's generator happens here, in one fixed
    // order that is the replay contract of a seed; helpers would hide that order.
    pub fn draw(seed: u64) -> Self {
        let mut rng = SeededRng::seed_from_u64(seed);
        let instances = rng.random_range(2..=5usize);
        let hooks = rng.random_range(1..=4usize);
        let dashboards = rng.random_range(1..=3usize);
        let fault_count = rng.random_range(0..=4usize);
        let mut faults: Vec<Fault> = (0..fault_count)
            .map(|_| {
                let at_ms = rng.random_range(FAULT_WINDOW.0..FAULT_WINDOW.1);
                let heal_after_ms = rng.random_range(300..4_000u64);
                let kind = match rng.random_range(0..5u32) {
                    0 => FaultKind::RedisCrashLoseData,
                    1 => FaultKind::RedisCrashKeepData,
                    2 => FaultKind::Partition(rng.random_range(0..instances)),
                    3 => FaultKind::PartitionToRedis(rng.random_range(0..instances)),
                    _ => FaultKind::InstanceCrash(rng.random_range(0..instances)),
                };
                Fault {
                    at_ms,
                    heal_after_ms,
                    kind,
                }
            })
            .collect();
        faults.sort_by_key(|f| f.at_ms);
        let reconnects = (0..rng.random_range(0..=4usize))
            .map(|_| {
                (
                    rng.random_range(0..dashboards),
                    rng.random_range(2_000..WORKLOAD_END_MS),
                )
            })
            .collect();
        let events_per_hook = rng.random_range(10..=40usize);
        // Drawn last, so the rest of every seed's plan is as it was before this existed.
        let slow_dashboard = rng
            .random_bool(0.3)
            .then(|| rng.random_range(0..dashboards));
        // Drawn after everything above, for the same reason.
        let inputs = if rng.random_bool(0.5) {
            rng.random_range(1..=12usize)
        } else {
            0
        };
        if rng.random_bool(0.4) {
            for _ in 0..rng.random_range(1..=2usize) {
                let at_ms = rng.random_range(FAULT_WINDOW.0..FAULT_WINDOW.1);
                let heal_after_ms = rng.random_range(100..2_500u64);
                let i = rng.random_range(0..instances);
                let kind = if rng.random_bool(0.5) {
                    FaultKind::Hold(i)
                } else {
                    FaultKind::Latency(i, rng.random_range(20..1_500u64))
                };
                faults.push(Fault {
                    at_ms,
                    heal_after_ms,
                    kind,
                });
            }
        }
        // Blips as often as long outages: on half the seeds a burst of one to four short
        // (< 2 s) cuts in a row on one instance's link to Redis, each healed before the
        // next. Drawn after the faults above, so their draws are as they were.
        if rng.random_bool(0.5) {
            let i = rng.random_range(0..instances);
            let mut at_ms = rng.random_range(FAULT_WINDOW.0..FAULT_WINDOW.1 - 6_000);
            for _ in 0..rng.random_range(1..=4usize) {
                let heal_after_ms = rng.random_range(100..2_000u64);
                let kind = if rng.random_bool(0.5) {
                    FaultKind::Partition(i)
                } else {
                    FaultKind::PartitionToRedis(i)
                };
                faults.push(Fault {
                    at_ms,
                    heal_after_ms,
                    kind,
                });
                at_ms += heal_after_ms + rng.random_range(250..1_000u64);
            }
        }
        // A fault that would overlap an earlier-drawn one on the same target is dropped
        // (the link faults were drawn last, so they give way).
        let mut kept: Vec<Fault> = Vec::new();
        for f in faults {
            if !clashes(&kept, &f) {
                kept.push(f);
            }
        }
        kept.sort_by_key(|f| f.at_ms);
        let faults = kept;
        let partitions: Vec<usize> = (0..faults.len())
            .filter(|&f| {
                matches!(
                    faults[f].kind,
                    FaultKind::Partition(_) | FaultKind::PartitionToRedis(_)
                )
            })
            .collect();
        let quiet_hook = (!partitions.is_empty() && rng.random_bool(0.5)).then(|| {
            (
                rng.random_range(0..hooks),
                partitions[rng.random_range(0..partitions.len())],
            )
        });
        let waiter = (inputs > 0 && !partitions.is_empty() && rng.random_bool(0.7))
            .then(|| partitions[rng.random_range(0..partitions.len())]);
        // Drawn after everything above, so the rest of every seed's plan is as it was: on
        // a quarter of the seeds Redis stalls for 0.5 to 4 s, on a quarter its Pub/Sub
        // connections are killed.
        let mut extra = Vec::new();
        if rng.random_bool(0.25) {
            extra.push(Fault {
                at_ms: rng.random_range(FAULT_WINDOW.0..FAULT_WINDOW.1),
                heal_after_ms: rng.random_range(500..4_000u64),
                kind: FaultKind::RedisStall,
            });
        }
        if rng.random_bool(0.25) {
            extra.push(Fault {
                at_ms: rng.random_range(FAULT_WINDOW.0..FAULT_WINDOW.1),
                heal_after_ms: 0,
                kind: FaultKind::KillPubsub,
            });
        }
        let (faults, quiet_hook, waiter) = with_extra(faults, extra, quiet_hook, waiter);
        // Liveness mode on one seed in eight, drawn after everything above.
        let forever = rng.random_bool(0.125).then(|| {
            if rng.random_bool(0.5) {
                Forever::Cut(rng.random_range(0..instances))
            } else {
                Forever::RedisDown
            }
        });
        // Drawn last: on one seed in five Redis is full for 0.5 to 5 s.
        let full = rng.random_bool(0.2).then(|| Fault {
            at_ms: rng.random_range(FAULT_WINDOW.0..FAULT_WINDOW.1),
            heal_after_ms: rng.random_range(500..5_000u64),
            kind: FaultKind::RedisFull,
        });
        let (faults, quiet_hook, waiter) =
            with_extra(faults, full.into_iter().collect(), quiet_hook, waiter);
        // Drawn last: on two seeds in three the cleaner deletes one or two sessions.
        let deletes = if rng.random_bool(2.0 / 3.0) {
            rng.random_range(1..=2usize)
        } else {
            0
        };
        // Drawn last: on three seeds in five an archive fault. Two in three of those, the
        // archive host goes down for 1 to 6 s while hook sessions end (4 to 14 s: their
        // archival fails and must be retried); one in three it turns slow (each call 0.2
        // to 2 s late) for 1 to 8 s, any time in the fault window.
        let archive = rng.random_bool(0.6).then(|| {
            if rng.random_bool(2.0 / 3.0) {
                Fault {
                    at_ms: rng.random_range(4_000..14_000u64),
                    heal_after_ms: rng.random_range(1_000..6_000u64),
                    kind: FaultKind::ArchiveDown,
                }
            } else {
                Fault {
                    at_ms: rng.random_range(FAULT_WINDOW.0..FAULT_WINDOW.1),
                    heal_after_ms: rng.random_range(1_000..8_000u64),
                    kind: FaultKind::ArchiveSlow(rng.random_range(200..2_000u64)),
                }
            }
        });
        let (faults, quiet_hook, waiter) =
            with_extra(faults, archive.into_iter().collect(), quiet_hook, waiter);
        Self {
            seed,
            instances,
            hooks,
            events_per_hook,
            dashboards,
            reconnects,
            faults,
            slow_dashboard,
            inputs,
            quiet_hook,
            waiter,
            forever,
            deletes,
        }
    }

    /// The faults a waiter waits across: [`Plan::waiter`]'s partition, and, on a seed with
    /// input traffic, the Pub/Sub kill (its item queued while the bridges redial).
    pub fn waiter_faults(&self) -> Vec<usize> {
        let kill = (self.inputs > 0)
            .then(|| {
                self.faults
                    .iter()
                    .position(|f| f.kind == FaultKind::KillPubsub)
            })
            .flatten();
        self.waiter.into_iter().chain(kill).collect()
    }

    pub fn destroys_data(&self) -> bool {
        self.faults
            .iter()
            .any(|f| f.kind == FaultKind::RedisCrashLoseData)
    }
}
