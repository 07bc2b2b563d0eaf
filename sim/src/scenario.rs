//! One simulated run, decided entirely by its seed.
//!
//! The seed draws a plan ("swarm" testing: each seed its own mix): how many afw instances
//! (2–5, all on one simulated Redis), how many hook clients and dashboards, and a fault plan
//! (Redis crashes with and without data, instance↔Redis partitions one way and both ways,
//! instance crashes and restarts, dashboard disconnects with resume). The production
//! `app::build` runs each instance on the sim ports. Clients record every request,
//! response and WebSocket frame they see into a [`History`], which the invariant checker
//! ([`crate::invariants`]) reads after the run.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use afw::app::{self, Ports};
use afw::config::Config;
use afw::ports::IdGen;
use futures_util::{SinkExt, StreamExt};
/// A specified generator (ChaCha12), so seeds replay across `rand` releases.
type StdRng = rand_chacha::ChaCha12Rng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, WsClient, event_seq};
use crate::ports::{SimClock, SimConnector, SimListener};
use crate::redis_host::RedisHost;

/// 2026-11-20T14:00:00Z: every run starts at the same instant.
pub const EPOCH_MS: u64 = 1_795_183_200_000;
/// Simulated time per turmoil step.
const TICK_MS: u64 = 5;
/// Longest a client waits for one answer before calling it a hang.
pub const REQUEST_BOUND: Duration = Duration::from_secs(5);
/// Faults happen in this window; afterwards everything heals.
const FAULT_WINDOW: (u64, u64) = (3_000, 25_000);
/// Hooks stop posting here; the settle phase follows.
const WORKLOAD_END_MS: u64 = 30_000;
/// The final checks start here (every fault healed long before).
const FINAL_CHECK_MS: u64 = 45_000;
/// afw's real TTLs (24 h, 5 min). The checker reaches them by clock jumps
/// ([`SimClock::jump`]): a day of idleness costs no simulation steps.
const SESSION_TTL: Duration = Duration::from_secs(afw::config::DEFAULT_SESSION_TTL_SECS);
const QUEUE_TTL: Duration = Duration::from_secs(afw::config::DEFAULT_QUEUE_TTL_SECS);
/// Every hook session's activity (hooks, commander, input) lies within this stretch of
/// stepped time: hooks start at 2 s, and no client writes to them after
/// `RETRY_END_MS + REQUEST_BOUND`.
const SESSION_ACTIVITY_MS: (u64, u64) = (2_000, RETRY_END_MS + 5_000);
/// Frames an instance queues for one WebSocket client before disconnecting it.
const WS_SEND_QUEUE: usize = 16;
/// How long the slow dashboard takes per frame while the hooks are busy.
const SLOW_READ_MS: u64 = 400;
/// afw's WebSocket heartbeat in this scenario, and the silence after which a dashboard
/// gives a connection up for dead and reconnects: the real dashboard closes the socket when
/// nothing arrives for 30 s against afw's default 20 s heartbeat; scaled so a run stays
/// short. A crashed instance may never send its FIN (a machine that loses power does not),
/// and this is how a client notices.
const WS_HEARTBEAT_SECS: u64 = 5;
const DASHBOARD_SILENCE: Duration = Duration::from_millis(WS_HEARTBEAT_SECS * 1_500);
/// Hooks give up retrying a write after this.
const RETRY_END_MS: u64 = WORKLOAD_END_MS + 5_000;

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
}

impl FaultKind {
    /// What the fault acts on: two faults on one target must not overlap (healing one
    /// would end the other early).
    fn target(&self) -> (u8, usize) {
        match self {
            Self::RedisCrashLoseData | Self::RedisCrashKeepData => (0, 0),
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
            Self::InstanceCrash(_) | Self::Hold(_) | Self::Latency(..) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub at_ms: u64,
    pub heal_after_ms: u64,
    pub kind: FaultKind,
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
    /// meanwhile: its Pub/Sub wake-up is lost with the link.
    pub waiter: Option<usize>,
}

impl Plan {
    pub fn draw(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
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
        // A fault that would overlap an earlier-drawn one on the same target is dropped
        // (the link faults were drawn last, so they give way).
        let mut kept: Vec<Fault> = Vec::new();
        for f in faults {
            let clashes = kept.iter().any(|k| {
                k.kind.target() == f.kind.target()
                    && f.at_ms < k.at_ms + k.heal_after_ms + 200
                    && k.at_ms < f.at_ms + f.heal_after_ms + 200
            });
            if !clashes {
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
        }
    }

    pub fn destroys_data(&self) -> bool {
        self.faults
            .iter()
            .any(|f| f.kind == FaultKind::RedisCrashLoseData)
    }
}

/// What a client saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A hook's POST of event `n` of `session`, sent to `instance` at `started`: the
    /// status, and the seq when stored.
    Post {
        session: String,
        n: u64,
        instance: usize,
        started: u64,
        status: u16,
        seq: Option<u64>,
    },
    /// A hook read its session (`what`: "session") or polled its commands ("commands").
    Read {
        session: String,
        what: &'static str,
        instance: usize,
        started: u64,
        status: u16,
    },
    /// A dashboard queued input item `item` (each attempt is a new item).
    InputQueued {
        session: String,
        item: String,
        instance: usize,
        started: u64,
        status: u16,
    },
    /// A poll of a session's input queue (a long poll when `timeout_ms > 0`): status 0 when
    /// no answer came, and the item it popped.
    InputPolled {
        session: String,
        instance: usize,
        started: u64,
        timeout_ms: u64,
        status: u16,
        item: Option<String>,
    },
    /// A request that got no answer within [`REQUEST_BOUND`].
    Hang { client: String, what: String },
    /// A dashboard (re)subscribed: the confirmation it got.
    Subscribed {
        dashboard: usize,
        session: String,
        after: Option<u64>,
        last_seq: u64,
        recovered: Option<bool>,
    },
    /// A dashboard received an event frame.
    Event {
        dashboard: usize,
        session: String,
        seq: u64,
        n: Option<u64>,
    },
    /// A dashboard's connection ended (it will reconnect), with the server's close code
    /// if it sent one (1013: the client could not keep up).
    Disconnected { dashboard: usize, code: Option<u16> },
    /// A command poll claimed these command ids.
    Claimed { session: String, ids: Vec<String> },
    /// The final read of a session's stored events: `(seq, n)`.
    Final {
        session: String,
        events: Vec<(u64, Option<u64>)>,
        last_seq: u64,
    },
    /// After every fault healed: did instance i accept a write in time?
    Live { instance: usize, ok: bool },
    /// A read of a whole session around its TTL, after the clock jumped (see [`TtlPhase`]).
    TtlRead {
        session: String,
        phase: TtlPhase,
        session_status: u16,
        events: u64,
        chains_status: u16,
    },
    /// The probe of the queues' TTL: an input item read just before the queue TTL, and the
    /// queues and session just after it.
    QueueTtl {
        before_ttl_available: bool,
        after_ttl_available: bool,
        after_ttl_commands: usize,
        session_status: u16,
    },
}

/// When a [`Record::TtlRead`] was taken, and so what it must show.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TtlPhase {
    /// Just under 24 h after the session's last activity: whole, as the final read saw it.
    BeforeTtl,
    /// Past 24 h after the last activity of a session written to at `BeforeTtl`: whole,
    /// with that one more event (its whole TTL was refreshed, events included).
    Refreshed,
    /// Past 24 h after the last activity: gone entirely (session, events, chains).
    AfterTtl,
}

/// Everything recorded during one run, in the order it happened.
#[derive(Debug, Default)]
pub struct History {
    pub records: Vec<(u64, Record)>,
}

type Shared = Rc<RefCell<History>>;

/// Which instances are crashed right now (the load balancer's view), by index.
type Down = Rc<RefCell<BTreeMap<usize, bool>>>;

fn now_ms() -> u64 {
    turmoil::sim_elapsed()
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn record(history: &Shared, r: Record) {
    history.borrow_mut().records.push((now_ms(), r));
}

fn instance_name(i: usize) -> String {
    format!("afw{i}")
}

async fn http(
    instance: usize,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    http_within(REQUEST_BOUND, instance, method, path, body).await
}

/// [`http`] with its own bound (long polls wait longer than a request may take).
async fn http_within(
    bound: Duration,
    instance: usize,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let addr = format!("{}:3001", instance_name(instance));
    let fut = client::http(&addr, method, path, body);
    match tokio::time::timeout(bound, fut).await {
        Ok(r) => r,
        Err(_) => Err("timeout".into()),
    }
}

/// A hook: posts its session's events through random instances (a load balancer), retrying
/// refused writes, and polls for commands between events.
async fn hook(
    id: usize,
    plan: Plan,
    rng_seed: u64,
    history: Shared,
    down: Down,
) -> turmoil::Result {
    let mut rng = StdRng::seed_from_u64(rng_seed);
    let session = format!("hook-{id}");
    tokio::time::sleep(Duration::from_millis(2_000 + rng.random_range(0..500))).await;
    let quiet_at = plan
        .quiet_hook
        .filter(|(h, _)| *h == id)
        .map(|(_, f)| plan.faults[f].at_ms + plan.faults[f].heal_after_ms / 2);
    for n in 0..plan.events_per_hook as u64 {
        if now_ms() > WORKLOAD_END_MS || quiet_at.is_some_and(|t| now_ms() > t) {
            break;
        }
        let kind = if n == 0 {
            "session:started"
        } else {
            "file:modified"
        };
        let ev = json!({"type": kind, "sessionId": session, "timestamp": EPOCH_MS + now_ms(), "n": n, "cwd": "/w"});
        for _attempt in 0..40 {
            if now_ms() > RETRY_END_MS {
                break;
            }
            let instance = pick_up(&mut rng, plan.instances, &down);
            let started = now_ms();
            match http(instance, "POST", "/api/events", Some(&ev)).await {
                Ok((status, body)) => {
                    record(
                        &history,
                        Record::Post {
                            session: session.clone(),
                            n,
                            instance,
                            started,
                            status,
                            seq: body["seq"].as_u64(),
                        },
                    );
                    if status == 201 {
                        break;
                    }
                }
                Err(e) if e == "timeout" => record(
                    &history,
                    Record::Hang {
                        client: session.clone(),
                        what: format!("POST event {n} via {instance}"),
                    },
                ),
                // A crashed instance refuses connections: try another.
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        }
        if n % 5 == 2 {
            let instance = pick_up(&mut rng, plan.instances, &down);
            let started = now_ms();
            if let Ok((status, _)) =
                http(instance, "GET", &format!("/api/sessions/{session}"), None).await
            {
                record(
                    &history,
                    Record::Read {
                        session: session.clone(),
                        what: "session",
                        instance,
                        started,
                        status,
                    },
                );
            }
        }
        if n % 5 == 4 {
            let instance = pick_up(&mut rng, plan.instances, &down);
            let started = now_ms();
            let answer = http(
                instance,
                "GET",
                &format!("/api/sessions/{session}/commands"),
                None,
            )
            .await;
            if let Ok((status, _)) = &answer {
                record(
                    &history,
                    Record::Read {
                        session: session.clone(),
                        what: "commands",
                        instance,
                        started,
                        status: *status,
                    },
                );
            }
            if let Ok((200, body)) = answer {
                let ids: Vec<String> = body["commands"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["id"].as_str().map(str::to_owned))
                    .collect();
                if !ids.is_empty() {
                    record(
                        &history,
                        Record::Claimed {
                            session: session.clone(),
                            ids,
                        },
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
    }
    Ok(())
}

/// An instance that is not crashed right now (the load balancer's health check).
fn pick_up(rng: &mut StdRng, instances: usize, down: &Down) -> usize {
    for _ in 0..16 {
        let i = rng.random_range(0..instances);
        if !down.borrow().get(&i).copied().unwrap_or(false) {
            return i;
        }
    }
    rng.random_range(0..instances)
}

async fn ws_connect(instance: usize) -> Result<WsClient, String> {
    client::ws_connect(&format!("{}:3001", instance_name(instance))).await
}

/// A dashboard: follows every hook session over the WebSocket of a random instance,
/// reconnecting (with `after`) when its plan says or when its instance goes away.
async fn dashboard(
    id: usize,
    plan: Plan,
    rng_seed: u64,
    history: Shared,
    down: Down,
) -> turmoil::Result {
    let mut rng = StdRng::seed_from_u64(rng_seed);
    let sessions: Vec<String> = (0..plan.hooks).map(|h| format!("hook-{h}")).collect();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut reconnects: Vec<u64> = plan
        .reconnects
        .iter()
        .filter(|(d, _)| *d == id)
        .map(|(_, t)| *t)
        .collect();
    reconnects.sort_unstable();
    tokio::time::sleep(Duration::from_millis(1_000 + rng.random_range(0..500))).await;
    while now_ms() < FINAL_CHECK_MS + 8_000 {
        let instance = pick_up(&mut rng, plan.instances, &down);
        let Ok(mut ws) = ws_connect(instance).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        for s in &sessions {
            let mut msg = json!({"type": "subscribe", "sessionId": s});
            if let Some(after) = last.get(s) {
                msg["after"] = json!(after);
            }
            if ws
                .send(Message::Text(msg.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        let leave_at = reconnects.iter().copied().find(|t| *t > now_ms());
        let mut code = None;
        loop {
            let deadline = leave_at
                .unwrap_or(FINAL_CHECK_MS + 8_000)
                .saturating_sub(now_ms());
            // Any frame, heartbeats included, starts the silence bound again.
            let wait = Duration::from_millis(deadline).min(DASHBOARD_SILENCE);
            let frame = match tokio::time::timeout(wait, ws.next()).await {
                Err(_) => break,
                Ok(Some(Ok(Message::Text(t)))) => {
                    serde_json::from_str::<Value>(t.as_str()).unwrap_or(Value::Null)
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    code = frame.map(|f| u16::from(f.code));
                    break;
                }
                Ok(Some(Ok(_))) => continue,
                Ok(_) => break,
            };
            let session = frame["sessionId"].as_str().unwrap_or_default().to_owned();
            match frame["type"].as_str() {
                Some("subscription_confirmed") if !session.is_empty() => {
                    let last_seq = frame["payload"]["lastSeq"].as_u64().unwrap_or(0);
                    let recovered = frame["payload"]["recovered"].as_bool();
                    record(
                        &history,
                        Record::Subscribed {
                            dashboard: id,
                            session: session.clone(),
                            after: last.get(&session).copied(),
                            last_seq,
                            recovered,
                        },
                    );
                    // Not recovered: the dashboard reloads; it continues from lastSeq.
                    if recovered != Some(true) {
                        last.insert(session, last_seq);
                    }
                }
                _ if event_seq(&frame).is_some() => {
                    if plan.slow_dashboard == Some(id) && now_ms() < WORKLOAD_END_MS {
                        tokio::time::sleep(Duration::from_millis(SLOW_READ_MS)).await;
                    }
                    let seq = event_seq(&frame).unwrap_or(0);
                    record(
                        &history,
                        Record::Event {
                            dashboard: id,
                            session: session.clone(),
                            seq,
                            n: frame["n"].as_u64(),
                        },
                    );
                    last.insert(session, seq);
                }
                _ => {}
            }
        }
        record(
            &history,
            Record::Disconnected {
                dashboard: id,
                code,
            },
        );
        let _ = ws.close(None).await;
    }
    Ok(())
}

/// Queues a pause for every hook session now and then (the dashboard's commands).
async fn commander(plan: Plan, rng_seed: u64, down: Down) -> turmoil::Result {
    let mut rng = StdRng::seed_from_u64(rng_seed);
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    while now_ms() < WORKLOAD_END_MS {
        let session = format!("hook-{}", rng.random_range(0..plan.hooks));
        let instance = pick_up(&mut rng, plan.instances, &down);
        let _ = http(
            instance,
            "POST",
            &format!("/api/sessions/{session}/commands"),
            Some(&json!({"type": "pause"})),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..3_000))).await;
    }
    Ok(())
}

/// A dashboard user typing input for the hook sessions; a refused item is typed again
/// (as a new item: a 503 may still have been stored, see [`FaultKind::Latency`]).
async fn typist(plan: Plan, rng_seed: u64, history: Shared, down: Down) -> turmoil::Result {
    let mut rng = StdRng::seed_from_u64(rng_seed);
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    for k in 0..plan.inputs {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..2_500))).await;
        let session = format!("hook-{}", rng.random_range(0..plan.hooks));
        for attempt in 0..10 {
            if now_ms() > WORKLOAD_END_MS {
                return Ok(());
            }
            let instance = pick_up(&mut rng, plan.instances, &down);
            let item = format!("in-{k}-{attempt}");
            if queue_input(&history, instance, &session, item).await == 201 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        }
    }
    Ok(())
}

/// Queues one input item, recorded: its status (0: no answer).
async fn queue_input(history: &Shared, instance: usize, session: &str, item: String) -> u16 {
    let started = now_ms();
    let status = http(
        instance,
        "POST",
        &format!("/api/sessions/{session}/input"),
        Some(&json!({ "input": item })),
    )
    .await
    .map_or(0, |(s, _)| s);
    record(
        history,
        Record::InputQueued {
            session: session.to_owned(),
            item,
            instance,
            started,
            status,
        },
    );
    status
}

/// One input poll (long when `timeout_ms > 0`), recorded: its status (0: no answer) and
/// whether it popped an item.
async fn poll_input(
    history: &Shared,
    instance: usize,
    session: &str,
    timeout_ms: u64,
) -> (u16, bool) {
    let started = now_ms();
    let answer = http_within(
        REQUEST_BOUND + Duration::from_millis(timeout_ms),
        instance,
        "GET",
        &format!("/api/sessions/{session}/input?timeout={timeout_ms}"),
        None,
    )
    .await;
    let (status, item) = match &answer {
        Ok((status, body)) => (*status, body["input"]["input"].as_str().map(str::to_owned)),
        Err(_) => (0, None),
    };
    let popped = item.is_some();
    record(
        history,
        Record::InputPolled {
            session: session.to_owned(),
            instance,
            started,
            timeout_ms,
            status,
            item,
        },
    );
    (status, popped)
}

/// The session of [`Plan::waiter`].
const WAITING_ROOM: &str = "waiting-room";

/// [`Plan::waiter`]: one long poll on the instance a partition cuts off, spanning the
/// partition, and one input item queued through another instance while it lasts.
async fn waiter(plan: Plan, fault: usize, history: Shared) -> turmoil::Result {
    let f = plan.faults[fault].clone();
    let (FaultKind::Partition(cut) | FaultKind::PartitionToRedis(cut)) = f.kind else {
        return Ok(());
    };
    let other = (cut + 1) % plan.instances;
    let ev = json!({"type": "session:started", "sessionId": WAITING_ROOM, "timestamp": EPOCH_MS, "cwd": "/w"});
    // Created just before the fault, so that no earlier fault has wiped it.
    tokio::time::sleep(Duration::from_millis(
        f.at_ms.saturating_sub(1_500 + now_ms()),
    ))
    .await;
    if !write(other, "/api/events", &ev).await {
        return Ok(());
    }
    tokio::time::sleep(Duration::from_millis(
        f.at_ms.saturating_sub(800 + now_ms()),
    ))
    .await;
    let typist = async {
        tokio::time::sleep(Duration::from_millis(800 + f.heal_after_ms / 3)).await;
        for attempt in 0..10 {
            let item = format!("in-w-{attempt}");
            if queue_input(&history, other, WAITING_ROOM, item).await == 201 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let timeout_ms = (f.heal_after_ms + 4_000).min(30_000);
    tokio::join!(typist, poll_input(&history, cut, WAITING_ROOM, timeout_ms));
    Ok(())
}

/// The input-inject hook of one session: long polls, one after the other.
async fn input_poller(
    hook: usize,
    plan: Plan,
    rng_seed: u64,
    history: Shared,
    down: Down,
) -> turmoil::Result {
    let mut rng = StdRng::seed_from_u64(rng_seed);
    let session = format!("hook-{hook}");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    while now_ms() < RETRY_END_MS {
        let instance = pick_up(&mut rng, plan.instances, &down);
        // Short polls, and the hook's own long ones (30 s), ending by `RETRY_END_MS`.
        let timeout_ms = if rng.random_bool(0.5) {
            rng.random_range(300..4_000u64)
        } else {
            rng.random_range(5_000..=30_000u64)
        }
        .min(RETRY_END_MS.saturating_sub(now_ms()))
        .max(300);
        if poll_input(&history, instance, &session, timeout_ms).await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// After every fault has healed: every instance must take a write, and the stored state is
/// read back for the checker.
async fn checker(plan: Plan, history: Shared, clock: SimClock) -> turmoil::Result {
    tokio::time::sleep(Duration::from_millis(FINAL_CHECK_MS)).await;
    for instance in 0..plan.instances {
        let mut ok = false;
        for _ in 0..20 {
            let ev = json!({"type": "file:created", "sessionId": "liveness", "timestamp": EPOCH_MS + now_ms()});
            if let Ok((201, _)) = http(instance, "POST", "/api/events", Some(&ev)).await {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        record(&history, Record::Live { instance, ok });
    }
    for h in 0..plan.hooks {
        let session = format!("hook-{h}");
        if let Ok((200, body)) = http(
            0,
            "GET",
            &format!("/api/events/{session}?limit=10000"),
            None,
        )
        .await
        {
            let events = body["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| (e["seq"].as_u64().unwrap_or(0), e["n"].as_u64()))
                .collect();
            record(
                &history,
                Record::Final {
                    session,
                    events,
                    last_seq: body["lastSeq"].as_u64().unwrap_or(0),
                },
            );
        }
    }
    // What is left in the input queues (the pollers stopped at `RETRY_END_MS`).
    if plan.inputs > 0 {
        let mut sessions: Vec<String> = (0..plan.hooks).map(|h| format!("hook-{h}")).collect();
        if plan.waiter.is_some() {
            sessions.push(WAITING_ROOM.into());
        }
        for (i, session) in sessions.iter().enumerate() {
            while poll_input(&history, i % plan.instances, session, 0).await == (200, true) {}
        }
    }
    ttl_phase(&plan, &history, &clock).await;
    Ok(())
}

/// Retries a write for a few seconds (every fault has healed by now); true once it got 2xx.
async fn write(instance: usize, path: &str, body: &Value) -> bool {
    for _ in 0..20 {
        if let Ok((status, _)) = http(instance, "POST", path, Some(body)).await
            && (200..300).contains(&status)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// Session, events and chains of `session` as one instance answers them.
async fn read_whole(instance: usize, session: &str) -> (u16, u64, u16) {
    let session_status = http(instance, "GET", &format!("/api/sessions/{session}"), None)
        .await
        .map_or(0, |(s, _)| s);
    let events = http(
        instance,
        "GET",
        &format!("/api/events/{session}?limit=10000"),
        None,
    )
    .await
    .map_or(u64::MAX, |(_, b)| b["count"].as_u64().unwrap_or(u64::MAX));
    let chains_status = http(
        instance,
        "GET",
        &format!("/api/sessions/{session}/chains"),
        None,
    )
    .await
    .map_or(0, |(s, _)| s);
    (session_status, events, chains_status)
}

/// The literal TTLs, reached by clock jumps once the workload is over: queues expire after
/// 5 idle minutes while their session stays; sessions are whole just before 24 h of
/// idleness and entirely gone just after; a write just before the TTL refreshes all of it.
async fn ttl_phase(plan: &Plan, history: &Shared, clock: &SimClock) {
    let wall = || Duration::from_millis(now_ms()) + clock.jumped();
    let ev = |session: &str| json!({"type": "file:modified", "sessionId": session, "timestamp": EPOCH_MS, "cwd": "/w"});

    // Queues: an item just under the queue TTL is still there; one just past it is gone,
    // with the commands, while the session lives on.
    let probe = "ttl-probe";
    let set_up = write(0, "/api/events", &ev(probe)).await
        && write(
            0,
            &format!("/api/sessions/{probe}/commands"),
            &json!({"type": "pause"}),
        )
        .await
        && write(
            0,
            &format!("/api/sessions/{probe}/input"),
            &json!({"input": "a"}),
        )
        .await;
    let input_path = format!("/api/sessions/{probe}/input?timeout=0");
    let available = |r: Result<(u16, Value), String>| {
        r.is_ok_and(|(s, b)| s == 200 && b["available"] == json!(true))
    };
    if set_up {
        clock.jump(QUEUE_TTL - Duration::from_secs(10));
        let before_ttl_available =
            available(http(1 % plan.instances, "GET", &input_path, None).await);
        let refreshed = write(
            0,
            &format!("/api/sessions/{probe}/input"),
            &json!({"input": "b"}),
        )
        .await;
        clock.jump(QUEUE_TTL + Duration::from_secs(1));
        let after_ttl_available = available(http(0, "GET", &input_path, None).await);
        let after_ttl_commands = http(
            1 % plan.instances,
            "GET",
            &format!("/api/sessions/{probe}/commands"),
            None,
        )
        .await
        .map_or(usize::MAX, |(_, b)| {
            b["commands"].as_array().map_or(usize::MAX, Vec::len)
        });
        let session_status = http(0, "GET", &format!("/api/sessions/{probe}"), None)
            .await
            .map_or(0, |(s, _)| s);
        record(
            history,
            Record::QueueTtl {
                before_ttl_available: before_ttl_available && refreshed,
                after_ttl_available,
                after_ttl_commands,
                session_status,
            },
        );
    }

    // Sessions: the clock jumps to just before the earliest possible expiry of any hook
    // session, then past the latest, then a day further.
    let margin = Duration::from_secs(30);
    let day_after = |ms: u64| Duration::from_millis(ms) + SESSION_TTL;
    let sessions: Vec<String> = (0..plan.hooks).map(|h| format!("hook-{h}")).collect();
    clock.jump(day_after(SESSION_ACTIVITY_MS.0).saturating_sub(margin + wall()));
    for (i, session) in sessions.iter().enumerate() {
        ttl_read(history, i % plan.instances, session, TtlPhase::BeforeTtl).await;
    }
    let refreshed = write(plan.instances - 1, "/api/events", &ev(&sessions[0])).await;
    record(
        history,
        Record::Live {
            instance: plan.instances - 1,
            ok: refreshed,
        },
    );
    clock.jump((day_after(SESSION_ACTIVITY_MS.1) + margin).saturating_sub(wall()));
    for (i, session) in sessions.iter().enumerate() {
        let phase = if i == 0 && refreshed {
            TtlPhase::Refreshed
        } else {
            TtlPhase::AfterTtl
        };
        ttl_read(history, (i + 1) % plan.instances, session, phase).await;
    }
    clock.jump(SESSION_TTL);
    ttl_read(history, 0, &sessions[0], TtlPhase::AfterTtl).await;
}

async fn ttl_read(history: &Shared, instance: usize, session: &str, phase: TtlPhase) {
    let (session_status, events, chains_status) = read_whole(instance, session).await;
    record(
        history,
        Record::TtlRead {
            session: session.to_owned(),
            phase,
            session_status,
            events,
            chains_status,
        },
    );
}

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
}

/// Tokio numbers tasks from one process-wide counter, and a runtime that shuts down (a
/// crashed host) drops its tasks shard by shard, the shard chosen by task id: the order in
/// which a crashed instance's sockets close would depend on how many tasks earlier runs in
/// the process spawned. So every run starts its task ids at a multiple of 64, and a seed
/// runs the same alone (`--seed N`) as within a sweep. Runs in one process must not
/// overlap (the tests serialise them).
fn align_task_ids() {
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

    // The data survives a bounce because it lives outside the host closure (AOF); a crash
    // that loses data wipes it first.
    // TTLs on the simulation's global clock, which survives the host's restarts. It reads
    // None while turmoil holds its world borrow: keep the last value seen.
    // Clock jumps move it as they move every instance's clock.
    let clock = SimClock::default();
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
    for i in 0..plan.instances {
        let clock = clock.clone();
        sim.host(instance_name(i), move || {
            let clock = clock.clone();
            async move {
                let ports = Ports {
                    clock: Arc::new(clock.clone()),
                    ids: Arc::new(IdGen::from_seed(
                        seed.wrapping_mul(31).wrapping_add(i as u64),
                    )),
                    connector: Arc::new(SimConnector),
                };
                let config = Config {
                    redis_url: Some("redis://redis:6379".into()),
                    instance_id: Some(instance_name(i)),
                    // Small, so a slow dashboard overflows it and is disconnected (1013).
                    ws_send_queue: WS_SEND_QUEUE,
                    ws_heartbeat_secs: WS_HEARTBEAT_SECS,
                    ..Config::default()
                };
                let app = app::build(config, ports)?;
                let listener = SimListener(turmoil::net::TcpListener::bind("0.0.0.0:3001").await?);
                app.serve(listener, std::future::pending()).await?;
                Ok(())
            }
        });
    }
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
        "commander",
        commander(plan.clone(), seed ^ 0x3000, down.clone()),
    );
    if plan.inputs > 0 {
        sim.client(
            "typist",
            typist(plan.clone(), seed ^ 0x4000, history.clone(), down.clone()),
        );
        if let Some(fault) = plan.waiter {
            sim.client("waiter", waiter(plan.clone(), fault, history.clone()));
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
        checker(plan.clone(), history.clone(), clock.clone()),
    );

    let mut pending: Vec<Fault> = plan.faults.clone();
    let mut healing: Vec<(u64, FaultKind)> = Vec::new();
    let sim_error = loop {
        match sim.step() {
            Ok(true) => break None,
            Ok(false) => {}
            Err(e) => break Some(e.to_string()),
        }
        let now = sim.elapsed().as_millis() as u64;
        while pending.first().is_some_and(|f| f.at_ms <= now) {
            let fault = pending.remove(0);
            apply(&mut sim, &redis, &down, &fault.kind, true);
            healing.push((now + fault.heal_after_ms, fault.kind));
        }
        healing.sort_by_key(|(at, _)| *at);
        while healing.first().is_some_and(|(at, _)| *at <= now) {
            let (_, kind) = healing.remove(0);
            apply(&mut sim, &redis, &down, &kind, false);
        }
    };
    let stepped = sim.elapsed();
    drop(sim);
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
    }
}

fn apply(
    sim: &mut turmoil::Sim<'_>,
    redis: &RedisHost,
    down: &Down,
    kind: &FaultKind,
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
        (FaultKind::RedisCrashKeepData, false) => sim.bounce(redis_name),
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
