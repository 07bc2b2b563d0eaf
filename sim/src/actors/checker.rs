//! After every fault has healed: each instance must take a write, the stored state is read
//! back, and the literal TTLs are reached by clock jumps.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::plan::{
    ARCHIVE_SETTLE, EPOCH_MS, FINAL_CHECK_MS, Plan, QUEUE_TTL, REQUEST_BOUND, SESSION_ACTIVITY_MS,
    SESSION_TTL,
};
use crate::ports::SimClock;
use crate::record::{Record, Shared, TtlPhase, now_ms, record};

use super::cleaner::{read_back, scratch};
use super::commander::claim;
use super::input::{poll_input, waiting_rooms};
use super::{http, http_within, write};

/// After every fault has healed: every instance must take a write, and the stored state is
/// read back for the checker.
pub(crate) async fn checker(
    plan: Plan,
    history: Shared,
    clock: SimClock,
    begin_forever: Rc<Cell<bool>>,
) -> turmoil::Result {
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
    // Every bridge is back on Pub/Sub (the first fault-free write above may have raced it:
    // a few tries, 250 ms apart).
    for instance in 0..plan.instances {
        let mut subscribed = false;
        for _ in 0..12 {
            if let Ok((200, body)) = http(instance, "GET", "/health", None).await
                && body["redis"]["pubsub"] == "subscribed"
            {
                subscribed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        record(
            &history,
            Record::Bridge {
                instance,
                subscribed,
            },
        );
    }
    // What is left in the command queues, leases let expire included (the hooks stopped
    // by `RETRY_END_MS`; their longest lease is 3 s). A few tries: every fault has healed.
    for h in 0..plan.hooks {
        let session = format!("hook-{h}");
        for _ in 0..4 {
            if claim(&history, h % plan.instances, &session, None).await.0 == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
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
                    session: session.clone(),
                    events,
                    last_seq: body["lastSeq"].as_u64().unwrap_or(0),
                    epoch: body["epoch"].as_str().map(str::to_owned),
                },
            );
            // A session Redis lost with its data is read from the archive (`archived:
            // true`): history, not the live state derived from the stored events.
            if let Ok((200, read)) = http(0, "GET", &format!("/api/sessions/{session}"), None).await
                && read["archived"] != true
            {
                let events = body["events"].as_array().cloned().unwrap_or_default();
                record(
                    &history,
                    Record::Derived {
                        session,
                        events,
                        read,
                    },
                );
            }
        }
    }
    // What is left in the input queues (the pollers stopped at `RETRY_END_MS`).
    if plan.inputs > 0 {
        let mut sessions: Vec<String> = (0..plan.hooks).map(|h| format!("hook-{h}")).collect();
        for f in plan.waiter_faults() {
            sessions.extend(waiting_rooms(&plan, f));
        }
        // Bounded: the typist queues at most 10 attempts per item (and the waiter one), so
        // a queue that still answers an item past that never drains (a pop that does not
        // remove), and is a violation, not a run that waits out its time.
        let most = plan.inputs * 10 + 1;
        for (i, session) in sessions.iter().enumerate() {
            let mut pops = 0;
            while poll_input(&history, i % plan.instances, session, 0).await == (200, true) {
                pops += 1;
                if pops > most {
                    record(
                        &history,
                        Record::Hang {
                            client: "checker".into(),
                            what: format!(
                                "the input queue of {session} still answered an item after {pops} pops (at most {most} were ever queued)"
                            ),
                        },
                    );
                    break;
                }
            }
        }
    }
    deleted_phase(&plan, &history).await;
    ttl_phase(&plan, &history, &clock).await;
    forever_phase(&plan, &history, &begin_forever).await;
    Ok(())
}

/// Every fault has healed: each deleted scratch session (and its chains) is gone from
/// every instance, and no instance lists it.
async fn deleted_phase(plan: &Plan, history: &Shared) {
    for k in 0..plan.deletes {
        read_back(history, plan, k).await;
    }
    if plan.deletes == 0 {
        return;
    }
    for instance in 0..plan.instances {
        let path = "/api/sessions?limit=1000";
        let (status, listed) = match http(instance, "GET", path, None).await {
            Ok((s, body)) => (s, body["sessions"].as_array().cloned().unwrap_or_default()),
            Err(_) => (0, Vec::new()),
        };
        for k in 0..plan.deletes {
            let session = scratch(k);
            let listed = listed.iter().any(|s| s["id"] == session.as_str());
            record(
                history,
                Record::ReadDeleted {
                    session,
                    instance,
                    path: path.into(),
                    status,
                    listed: Some(listed),
                    archived: false,
                },
            );
        }
    }
}

/// Liveness mode: the fault that never heals begins, and every instance is probed three
/// times over the next ten seconds with a write, a read and a one-second long poll.
async fn forever_phase(plan: &Plan, history: &Shared, begin: &Rc<Cell<bool>>) {
    if plan.forever.is_none() {
        return;
    }
    begin.set(true);
    let session = "forever-probe";
    let ev =
        json!({"type": "file:created", "sessionId": session, "timestamp": EPOCH_MS, "cwd": "/w"});
    let probes: [(&'static str, &str, String, Option<&Value>); 3] = [
        ("write", "POST", "/api/events".into(), Some(&ev)),
        ("read", "GET", format!("/api/sessions/{session}"), None),
        (
            "long poll",
            "GET",
            format!("/api/sessions/{session}/input?timeout=1000"),
            None,
        ),
    ];
    for (round, pause_ms) in [1_000, 3_000, 6_000].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        for instance in 0..plan.instances {
            for (what, method, path, body) in &probes {
                let bound = REQUEST_BOUND + Duration::from_secs(1);
                let status = http_within(bound, instance, method, path, *body)
                    .await
                    .map_or(0, |(s, _)| s);
                record(
                    history,
                    Record::Forever {
                        instance,
                        round,
                        what,
                        status,
                    },
                );
            }
        }
    }
}

/// Session, events and chains of `session` as one instance answers them.
pub(crate) struct Whole {
    pub session_status: u16,
    /// The session read came from the archive (`archived: true`).
    pub archived: bool,
    pub events: u64,
    pub chains_status: u16,
    /// How many chains the chains read listed.
    pub chains: usize,
}

pub(crate) async fn read_whole(instance: usize, session: &str) -> Whole {
    let (session_status, archived) =
        http(instance, "GET", &format!("/api/sessions/{session}"), None)
            .await
            .map_or((0, false), |(s, b)| (s, s == 200 && b["archived"] == true));
    let events = http(
        instance,
        "GET",
        &format!("/api/events/{session}?limit=10000"),
        None,
    )
    .await
    .map_or(u64::MAX, |(_, b)| b["count"].as_u64().unwrap_or(u64::MAX));
    let (chains_status, chains) = http(
        instance,
        "GET",
        &format!("/api/sessions/{session}/chains"),
        None,
    )
    .await
    .map_or((0, 0), |(s, b)| {
        (s, b["chains"].as_array().map_or(0, Vec::len))
    });
    Whole {
        session_status,
        archived,
        events,
        chains_status,
        chains,
    }
}

/// The literal TTLs, reached by clock jumps once the workload is over: queues expire after
/// 5 idle minutes while their session stays; sessions are whole just before 24 h of
/// idleness and entirely gone just after; a write just before the TTL refreshes all of it.
// Long on purpose: a script of clock jumps and reads, each step depending on the time
// the previous one left; it reads as the timeline it checks.
pub(crate) async fn ttl_phase(plan: &Plan, history: &Shared, clock: &SimClock) {
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
    // Every hook session is within the sweepers' lead of its TTL: they archive it now.
    tokio::time::sleep(ARCHIVE_SETTLE).await;
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
    // The refreshed session nears its TTL in turn (the sweepers archive its new state),
    // then passes it.
    let lead = Duration::from_secs(5 * 60);
    clock.jump(SESSION_TTL - lead);
    tokio::time::sleep(ARCHIVE_SETTLE).await;
    clock.jump(lead);
    ttl_read(history, 0, &sessions[0], TtlPhase::AfterTtl).await;
}

pub(crate) async fn ttl_read(history: &Shared, instance: usize, session: &str, phase: TtlPhase) {
    let w = read_whole(instance, session).await;
    record(
        history,
        Record::TtlRead {
            session: session.to_owned(),
            phase,
            session_status: w.session_status,
            events: w.events,
            chains_status: w.chains_status,
            chains: w.chains,
            archived: w.archived,
        },
    );
}
