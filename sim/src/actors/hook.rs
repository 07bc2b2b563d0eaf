//! A hook: one Claude Code session posting its events through the load balancer.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use super::commander::Claims;
use super::script::hook_script;
use super::{http, pick_up};
use crate::faults::Down;
use crate::plan::{EPOCH_MS, FaultKind, Plan, RETRY_END_MS, SeededRng, WORKLOAD_END_MS};
use crate::record::{Record, Shared, now_ms, record};

/// A hook: posts its session's events through random instances (a load balancer), retrying
/// refused writes, and polls for commands between events.
// Long on purpose: a hook's life (post each event, retry refused writes, poll for
// commands) reads top to bottom like the real hook's loop, and its state (rng, retries,
// the event counter) spans all of it.
pub(crate) async fn hook(
    id: usize,
    plan: Plan,
    rng_seed: u64,
    history: Shared,
    down: Down,
) -> turmoil::Result {
    let mut rng = SeededRng::seed_from_u64(rng_seed);
    let session = format!("hook-{id}");
    tokio::time::sleep(Duration::from_millis(2_000 + rng.random_range(0..500))).await;
    let quiet_at = plan
        .quiet_hook
        .filter(|(h, _)| *h == id)
        .map(|(_, f)| plan.faults[f].at_ms + plan.faults[f].heal_after_ms / 2);
    // Targeted: on a seed whose Redis kills the Pub/Sub connections, hook 0 (unless it is
    // the quiet hook already) posts its last event 20 ms after the kill (keeping it back
    // if it is done before), while the bridges redial and nobody listens, and then goes
    // quiet: only the resync after each bridge's re-subscribe brings that event to the
    // dashboards.
    let last_post_at = (id == 0 && quiet_at.is_none())
        .then(|| {
            plan.faults
                .iter()
                .find(|f| f.kind == FaultKind::KillPubsub)
                .map(|f| f.at_ms + 20)
        })
        .flatten();
    let mut script = hook_script(rng_seed ^ 0x5c21_97f3, &session, plan.events_per_hook);
    // Targeted: on a seed with a slow dashboard each hook (but the quiet and the targeted
    // one) ends with a backlog, a burst of terminal output and its last event in one batch,
    // then nothing: the slow dashboard's inbox overflows on frames that no later event
    // would repair.
    let mut backlog_from =
        (plan.slow_dashboard.is_some() && quiet_at.is_none() && last_post_at.is_none())
            .then(|| with_backlog(&mut script));
    // Targeted: on a seed whose Redis loses its data, the last hook (unless quiet or
    // targeted already, and but for a slow dashboard) posts a burst of terminal output as one batch just after Redis is
    // back: the session begins again and its new seqs pass every dashboard's cursor before
    // their bridges re-subscribe, so only the epoch tells the new incarnation from the old.
    // Not with a slow dashboard: it reads slowly on purpose, and a burst would only make it
    // late, which invariant 8 rightly flags.
    let mut burst_at = (id + 1 == plan.hooks
        && quiet_at.is_none()
        && last_post_at.is_none()
        && plan.slow_dashboard.is_none())
    .then(|| {
        plan.faults
            .iter()
            .find(|f| f.kind == FaultKind::RedisCrashLoseData)
            .map(|f| f.at_ms + f.heal_after_ms + 50)
    })
    .flatten()
    .filter(|t| *t < WORKLOAD_END_MS);
    let mut claims = Claims::new(rng_seed ^ 0x6c61_696d);
    let mut next = 0;
    for round in 0u64.. {
        if let Some(t) = burst_at
            && (now_ms() >= t || next >= script.len())
        {
            tokio::time::sleep(Duration::from_millis(t.saturating_sub(now_ms()))).await;
            burst_at = None;
            let events: Vec<(u64, Value)> = burst(&mut script, next)
                .map(|i| (i as u64, stamped(&script[i], &session, i as u64)))
                .collect();
            // The closing backlog moved down with the lines put before it.
            backlog_from = backlog_from.map(|b| if b >= next { b + events.len() } else { b });
            next += events.len();
            post(&history, &plan, &mut rng, &down, &session, &events).await;
            continue;
        }
        if next >= script.len()
            || now_ms() > WORKLOAD_END_MS
            || quiet_at.is_some_and(|t| now_ms() > t)
        {
            break;
        }
        // Now and then a batch of two or three, as the hooks send a backlog; the closing
        // backlog goes as one batch.
        let upto = match backlog_from {
            Some(b) if next < b => b,
            // The targeted hook keeps its last event for its moment.
            _ if last_post_at.is_some() => (script.len() - 1).max(next + 1),
            _ => script.len(),
        };
        let drawn = if rng.random_bool(0.15) {
            rng.random_range(2..=3usize)
        } else {
            1
        };
        // Within 600 ms of its moment the targeted hook stops, waits for it, and posts one
        // event then.
        let last = match last_post_at {
            Some(t) if now_ms() + 600 >= t || next + 1 == script.len() => {
                tokio::time::sleep(Duration::from_millis(t.saturating_sub(now_ms()))).await;
                true
            }
            _ => false,
        };
        let take = if last {
            1
        } else if backlog_from == Some(next) {
            script.len() - next
        } else {
            drawn.min(upto - next)
        };
        let events: Vec<(u64, Value)> = (next..next + take)
            .map(|i| (i as u64, stamped(&script[i], &session, i as u64)))
            .collect();
        next += take;
        post(&history, &plan, &mut rng, &down, &session, &events).await;
        let n = round;
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
        if n % claims.every == claims.every - 1 {
            claims.claim(&history, &plan, &down, &session).await;
        }
        if last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
    }
    Ok(())
}

/// Lines of terminal output in a hook's closing backlog: twice the slow dashboard's
/// send queue.
const BACKLOG_LINES: usize = 2 * crate::plan::WS_SEND_QUEUE;

/// Puts [`BACKLOG_LINES`] of terminal output before the script's last event; where the
/// backlog (those lines and that event) begins.
fn with_backlog(script: &mut Vec<Value>) -> usize {
    let at = script.len().saturating_sub(1);
    script.splice(at..at, terminal_lines("backlog", BACKLOG_LINES));
    at
}

/// `n` events of terminal output, `<word> i` each.
fn terminal_lines(word: &'static str, n: usize) -> impl Iterator<Item = Value> {
    (0..n).map(move |i| {
        json!({"type": "terminal:output", "output": format!("{word} {i}\n"), "stream": "stdout"})
    })
}

/// Lines of terminal output in a data-loss burst: more than any hook posts before it.
const BURST_LINES: usize = 80;

/// Puts [`BURST_LINES`] of terminal output into the script at `at`; their positions.
fn burst(script: &mut Vec<Value>, at: usize) -> std::ops::Range<usize> {
    script.splice(at..at, terminal_lines("burst", BURST_LINES));
    at..at + BURST_LINES
}

/// An event of the script as sent: its body with the session, the time, its index `n` and
/// its `eventId` (the same on every retry, so a retry of a write that was stored after all
/// is answered as a duplicate instead of being stored twice).
fn stamped(body: &Value, session: &str, n: u64) -> Value {
    let mut ev = body.clone();
    ev["sessionId"] = json!(session);
    ev["eventId"] = json!(format!("{session}-e{n}"));
    ev["timestamp"] = json!(EPOCH_MS + now_ms());
    ev["n"] = json!(n);
    ev
}

/// Posts one event (or a batch) through random instances until one answers 201 (or 200:
/// stored already, by an attempt whose answer was a 503 or lost), each answer recorded per
/// event (a batch's `results[i]` for event i); an attempt without an answer is recorded
/// with status 0.
async fn post(
    history: &Shared,
    plan: &Plan,
    rng: &mut SeededRng,
    down: &Down,
    session: &str,
    events: &[(u64, Value)],
) {
    let (path, body) = match events {
        [(_, one)] => ("/api/events", one.clone()),
        many => (
            "/api/events/batch",
            json!({"events": many.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>()}),
        ),
    };
    for _attempt in 0..40 {
        if now_ms() > RETRY_END_MS {
            break;
        }
        let instance = pick_up(rng, plan.instances, down);
        let started = now_ms();
        // One attempt at event `n`, as answered (`item`: its part of the answer).
        let attempt = |n: u64, status: u16, item: &Value| Record::Post {
            session: session.to_owned(),
            n,
            instance,
            started,
            status,
            seq: item["seq"].as_u64(),
            duplicate: item["duplicate"] == true,
            epoch: item["epoch"].as_str().map(str::to_owned),
        };
        match http(instance, "POST", path, Some(&body)).await {
            Ok((status, answer)) => {
                for (i, (n, _)) in events.iter().enumerate() {
                    let item = if events.len() == 1 {
                        &answer
                    } else {
                        &answer["results"][i]
                    };
                    record(history, attempt(*n, status, item));
                }
                if status == 201 || status == 200 {
                    return;
                }
            }
            Err(e) => {
                if e == "timeout" {
                    record(
                        history,
                        Record::Hang {
                            client: session.to_owned(),
                            what: format!(
                                "POST {path} {:?} via {instance}",
                                events.first().map(|e| e.0)
                            ),
                        },
                    );
                }
                // No answer (a timeout, or a crashed instance refusing or dropping the
                // connection): the write may or may not have been stored.
                for (n, _) in events {
                    record(history, attempt(*n, 0, &Value::Null));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
    }
}
