//! The fault injector: starts and heals each [`FaultKind`] of the plan on the turmoil world
//! (crashes, bounces, partitions one way and both ways, held links, latency, a stalled
//! Redis, killed Pub/Sub connections, a full Redis, the archive host down or slow), and
//! keeps the load balancer's view of which instances are down.
//!
//! Nothing here may decide when a fault happens (that is [`crate::plan`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use crate::archive_host::ArchiveHost;
use crate::plan::{FaultKind, instance_name};
use crate::redis_host::RedisHost;

/// Which instances are crashed right now (the load balancer's view), by index.
pub(crate) type Down = Rc<RefCell<BTreeMap<usize, bool>>>;

pub(crate) fn apply(
    sim: &mut turmoil::Sim<'_>,
    redis: &RedisHost,
    archive: &ArchiveHost,
    down: &Down,
    kind: &FaultKind,
    heal_after_ms: u64,
    start: bool,
) {
    let redis_name = "redis";
    match (kind, start) {
        (FaultKind::RedisCrashLoseData | FaultKind::RedisCrashKeepData, true) => {
            sim.crash(redis_name);
        }
        (FaultKind::RedisCrashLoseData, false) => {
            redis.wipe();
            sim.bounce(redis_name);
        }
        (FaultKind::RedisCrashKeepData, false) => {
            redis.restart();
            sim.bounce(redis_name);
        }
        (FaultKind::Partition(i), true) => sim.partition(instance_name(*i), redis_name),
        (FaultKind::Partition(i), false) => sim.repair(instance_name(*i), redis_name),
        (FaultKind::PartitionToRedis(i), true) => {
            sim.partition_oneway(instance_name(*i), redis_name)
        }
        (FaultKind::PartitionToRedis(i), false) => sim.repair_oneway(instance_name(*i), redis_name),
        (FaultKind::InstanceCrash(i), true) => {
            down.borrow_mut().insert(*i, true);
            sim.crash(instance_name(*i));
        }
        (FaultKind::InstanceCrash(i), false) => {
            sim.bounce(instance_name(*i));
            down.borrow_mut().insert(*i, false);
        }
        (FaultKind::RedisStall, true) => redis.stall(Duration::from_millis(heal_after_ms)),
        (FaultKind::KillPubsub, true) => {
            redis.kill_pubsub();
        }
        (FaultKind::RedisFull, true) => redis.set_maxmemory(1),
        (FaultKind::RedisFull, false) => redis.set_maxmemory(0),
        // A stall ends by itself; a kill is over once done.
        (FaultKind::RedisStall | FaultKind::KillPubsub, false) => {}
        (FaultKind::ArchiveDown, true) => archive.crash(),
        (FaultKind::ArchiveDown, false) => archive.restart(),
        (FaultKind::ArchiveSlow(ms), true) => archive.set_delay(Duration::from_millis(*ms)),
        (FaultKind::ArchiveSlow(_), false) => archive.set_delay(Duration::ZERO),
        (FaultKind::Hold(i), true) => sim.hold(instance_name(*i), redis_name),
        (FaultKind::Hold(i), false) => sim.release(instance_name(*i), redis_name),
        (FaultKind::Latency(i, ms), true) => {
            sim.set_link_latency(instance_name(*i), redis_name, Duration::from_millis(*ms));
        }
        (FaultKind::Latency(i, _), false) => {
            // Back to the default spread: 0 to 100 ms.
            sim.set_link_latency(instance_name(*i), redis_name, Duration::ZERO);
            sim.set_link_max_message_latency(
                instance_name(*i),
                redis_name,
                Duration::from_millis(100),
            );
        }
    }
}
