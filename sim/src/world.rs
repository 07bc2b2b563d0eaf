//! One simulated run, decided entirely by its seed.
//!
//! The seed draws a plan ("swarm" testing: each seed its own mix): how many afw instances
//! (2–5, all on one simulated Redis and one archive host), how many hook clients and
//! dashboards, and a fault plan (Redis crashes with and without data, instance↔Redis
//! partitions one way and both ways, instance crashes and restarts, dashboard disconnects
//! with resume, the archive down or slow). The production
//! `app::build` runs each instance on the sim ports. Clients record every request,
//! response and WebSocket frame they see into a [`History`], which the invariant checker
//! ([`crate::invariants`]) reads after the run.
//!
//! This module builds the turmoil world (the Redis host, the archive host, the instances,
//! the actors) and runs the step loop, applying the fault schedule; the plan, the faults,
//! the records and the actors live in their own modules.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use afw::app::{self, Ports};
use afw::config::Config;
use afw::metrics::Metrics;
use afw::ports::IdGen;

use crate::actors::{
    checker, cleaner, commander, dashboard, hook, input_poller, typist, viewer, waiter,
};
use crate::archive_host::ArchiveHost;
use crate::faults::{Down, apply};
use crate::plan::{
    ARCHIVE_SWEEP_SECS, EPOCH_MS, Fault, FaultKind, Plan, TICK_MS, WS_HEARTBEAT_SECS,
    WS_SEND_QUEUE, instance_name,
};
use crate::ports::{SimClock, SimConnector, SimListener};
use crate::record::{History, Shared};
use crate::redis_host::RedisHost;

/// Every instance incarnation's metrics, as they start.
type Incarnations = Rc<RefCell<Vec<Arc<Metrics>>>>;

/// The outcome of one run.
pub struct Run {
    pub plan: Plan,
    pub history: History,
    /// Set when turmoil itself failed (a panic, or the run exceeded its duration).
    pub sim_error: Option<String>,
    /// Simulated time covered by turmoil steps.
    pub stepped: Duration,
    /// Wall-clock time the clock jumps skipped (idle stretches).
    pub jumped: Duration,
    /// The keys still live in the simulated Redis at the end, with their time left
    /// (`None`: no TTL). By then every session's TTL has passed a day ago.
    pub leftover_keys: Vec<(String, Option<Duration>)>,
    /// The metrics of every instance incarnation (a restart starts from zero), in the
    /// order they started.
    pub metrics: Vec<Arc<Metrics>>,
    /// The archive every instance filed into, as the run left it.
    pub archive: ArchiveHost,
}

/// Tokio numbers tasks from one process-wide counter, and a runtime that shuts down (a
/// crashed host) drops its tasks shard by shard, the shard chosen by task id: the order in
/// which a crashed instance's sockets close would depend on how many tasks earlier runs in
/// the process spawned. So every run starts its task ids at a multiple of 64, and a seed
/// runs the same alone (`--seed N`) as within a sweep. Runs in one process must not
/// overlap (the tests serialise them).
pub(crate) fn align_task_ids() {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    for _ in 0..64 {
        let id: u64 = rt.spawn(async {}).id().to_string().parse().unwrap_or(0);
        if (id + 1).is_multiple_of(64) {
            return;
        }
    }
}

/// Runs the seed's plan to the end.
pub fn run(seed: u64) -> Run {
    align_task_ids();
    let plan = Plan::draw(seed);
    let history: Shared = Rc::new(RefCell::new(History::default()));
    let down: Down = Rc::new(RefCell::new(BTreeMap::new()));
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_millis(EPOCH_MS))
        .simulation_duration(Duration::from_secs(180))
        // 5 ms steps: afw's shortest timer is hundreds of milliseconds, and a coarser step
        // makes a seed about 3x cheaper to simulate.
        .tick_duration(Duration::from_millis(TICK_MS))
        .build();

    let clock = SimClock::default();
    let redis = redis_host(&mut sim, &clock);
    let archive = ArchiveHost::default();
    let metrics: Incarnations = Rc::new(RefCell::new(Vec::new()));
    instances(&mut sim, &plan, seed, &clock, &archive, &metrics);
    let begin_forever = Rc::new(Cell::new(false));
    actors(
        &mut sim,
        &plan,
        seed,
        &history,
        &down,
        &clock,
        &begin_forever,
    );
    let sim_error = step_to_the_end(&mut sim, &plan, &redis, &archive, &down, &begin_forever);
    let stepped = sim.elapsed();
    drop(sim);
    let leftover_keys = redis.live_keys();
    let history = Rc::try_unwrap(history)
        .map(RefCell::into_inner)
        .unwrap_or_else(|rc| History {
            records: rc.borrow().records.clone(),
        });
    Run {
        plan,
        history,
        sim_error,
        stepped,
        jumped: clock.jumped(),
        leftover_keys,
        metrics: metrics.take(),
        archive,
    }
}

/// The simulated Redis host. Its data lives outside the host closure, so it survives a
/// bounce (AOF); a crash that loses data wipes it first.
fn redis_host(sim: &mut turmoil::Sim<'_>, clock: &SimClock) -> RedisHost {
    // TTLs on the simulation's global clock, which survives the host's restarts. It reads
    // None while turmoil holds its world borrow: keep the last value seen.
    // Clock jumps move it as they move every instance's clock.
    let last_seen = Rc::new(std::cell::Cell::new(Duration::ZERO));
    let redis_clock = clock.clone();
    let redis = RedisHost::with_clock(Rc::new(move || {
        if let Some(now) = turmoil::sim_elapsed() {
            last_seen.set(now);
        }
        last_seen.get() + redis_clock.jumped()
    }));
    let redis_for_host = redis.clone();
    sim.host("redis", move || {
        let redis = redis_for_host.clone();
        async move {
            let listener = turmoil::net::TcpListener::bind("0.0.0.0:6379").await?;
            loop {
                let (stream, _) = listener.accept().await?;
                let redis = redis.clone();
                tokio::task::spawn_local(async move { redis.serve(stream).await });
            }
        }
    });
    redis
}

/// One afw instance per host, built by the production `app::build` on the sim ports, all
/// filing into the one archive host.
fn instances(
    sim: &mut turmoil::Sim<'_>,
    plan: &Plan,
    seed: u64,
    clock: &SimClock,
    archive: &ArchiveHost,
    metrics: &Incarnations,
) {
    for i in 0..plan.instances {
        let clock = clock.clone();
        let archive = archive.clone();
        let metrics = Rc::clone(metrics);
        sim.host(instance_name(i), move || {
            let clock = clock.clone();
            let archive = archive.clone();
            let metrics = Rc::clone(&metrics);
            async move {
                let ports = Ports {
                    clock: Arc::new(clock.clone()),
                    ids: Arc::new(IdGen::from_seed(
                        seed.wrapping_mul(31).wrapping_add(i as u64),
                    )),
                    connector: Arc::new(SimConnector),
                    archive: Some(Arc::new(archive)),
                };
                let config = Config {
                    redis_url: Some("redis://redis:6379".into()),
                    instance_id: Some(instance_name(i)),
                    // Small, so a slow dashboard overflows it and is disconnected (1013).
                    ws_send_queue: WS_SEND_QUEUE,
                    ws_heartbeat_secs: WS_HEARTBEAT_SECS,
                    archive_sweep_secs: ARCHIVE_SWEEP_SECS,
                    ..Config::default()
                };
                let app = app::build(config, ports)?;
                metrics.borrow_mut().push(Arc::clone(app.state.metrics()));
                let listener = SimListener(turmoil::net::TcpListener::bind("0.0.0.0:3001").await?);
                app.serve(listener, std::future::pending()).await?;
                Ok(())
            }
        });
    }
}

/// The clients, each seeded from the run's seed: hooks, dashboards, the commander, the
/// typist, the waiter and the input pollers, then the checker.
fn actors(
    sim: &mut turmoil::Sim<'_>,
    plan: &Plan,
    seed: u64,
    history: &Shared,
    down: &Down,
    clock: &SimClock,
    begin_forever: &Rc<Cell<bool>>,
) {
    for h in 0..plan.hooks {
        sim.client(
            format!("hook{h}"),
            hook(
                h,
                plan.clone(),
                seed ^ (0x1000 + h as u64),
                history.clone(),
                down.clone(),
            ),
        );
    }
    for d in 0..plan.dashboards {
        sim.client(
            format!("dashboard{d}"),
            dashboard(
                d,
                plan.clone(),
                seed ^ (0x2000 + d as u64),
                history.clone(),
                down.clone(),
            ),
        );
    }
    sim.client(
        "viewer",
        viewer(plan.clone(), seed ^ 0x6000, history.clone(), down.clone()),
    );
    if plan.deletes > 0 {
        sim.client(
            "cleaner",
            cleaner(plan.clone(), seed ^ 0x7000, history.clone(), down.clone()),
        );
    }
    sim.client(
        "commander",
        commander(plan.clone(), seed ^ 0x3000, history.clone(), down.clone()),
    );
    if plan.inputs > 0 {
        sim.client(
            "typist",
            typist(plan.clone(), seed ^ 0x4000, history.clone(), down.clone()),
        );
        for fault in plan.waiter_faults() {
            let name = if plan.waiter == Some(fault) {
                "waiter"
            } else {
                "waiter-kill"
            };
            sim.client(name, waiter(plan.clone(), fault, history.clone()));
        }
        for h in 0..plan.hooks {
            sim.client(
                format!("input{h}"),
                input_poller(
                    h,
                    plan.clone(),
                    seed ^ (0x5000 + h as u64),
                    history.clone(),
                    down.clone(),
                ),
            );
        }
    }
    sim.client(
        "checker",
        checker(
            plan.clone(),
            history.clone(),
            clock.clone(),
            begin_forever.clone(),
        ),
    );
}

/// Steps the world until every client is done, starting and healing the plan's faults on
/// time. The error, if the simulation failed.
fn step_to_the_end(
    sim: &mut turmoil::Sim<'_>,
    plan: &Plan,
    redis: &RedisHost,
    archive: &ArchiveHost,
    down: &Down,
    begin_forever: &Cell<bool>,
) -> Option<String> {
    let mut pending: Vec<Fault> = plan.faults.clone();
    // Liveness mode: the checker says when; it never heals.
    let mut forever = plan.forever;
    let mut healing: Vec<(u64, FaultKind)> = Vec::new();
    loop {
        match sim.step() {
            Ok(true) => break None,
            Ok(false) => {}
            Err(e) => break Some(e.to_string()),
        }
        if begin_forever.get()
            && let Some(f) = forever.take()
        {
            apply(sim, redis, archive, down, &f.kind(), 0, true);
        }
        let now = sim.elapsed().as_millis() as u64;
        while pending.first().is_some_and(|f| f.at_ms <= now) {
            let fault = pending.remove(0);
            apply(
                sim,
                redis,
                archive,
                down,
                &fault.kind,
                fault.heal_after_ms,
                true,
            );
            healing.push((now + fault.heal_after_ms, fault.kind));
        }
        healing.sort_by_key(|(at, _)| *at);
        while healing.first().is_some_and(|(at, _)| *at <= now) {
            let (_, kind) = healing.remove(0);
            apply(sim, redis, archive, down, &kind, 0, false);
        }
    }
}
