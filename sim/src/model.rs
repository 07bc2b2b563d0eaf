//! A reference model of what afw derives from a session's events, written from the
//! contract (§1, §2: `session:started` fills the session, `session:ended` completes it,
//! `chain:compiled` creates a chain, `chain:*` and `step:*` update it and its steps,
//! `interaction:*` set the conversation state), independently of `src/domain/derive.rs`
//! and simpler: it keeps only what the invariant compares.
//!
//! It replays a session's stored events in `seq` order and predicts the session and its
//! chains. Nothing here may talk to afw or record: [`crate::invariants`] feeds it a final
//! read and compares.

use std::collections::BTreeMap;

use serde_json::Value;

/// What the model predicts for one session.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Predicted {
    pub(crate) status: &'static str,
    /// The timestamp of the event that created the session (the first stored).
    pub(crate) started_at: Option<u64>,
    pub(crate) ended_at: Option<u64>,
    /// Set by `session:ended`: its `duration`, else from `startedAt` to its timestamp.
    pub(crate) duration: Option<u64>,
    pub(crate) conversation: Option<&'static str>,
    pub(crate) steps_executed: u64,
    pub(crate) chains_completed: u64,
    pub(crate) event_count: u64,
    pub(crate) current_chain: Option<String>,
    pub(crate) chains: BTreeMap<String, PredictedChain>,
}

#[derive(Debug, Default, PartialEq)]
pub(crate) struct PredictedChain {
    pub(crate) status: &'static str,
    /// Step number → status.
    pub(crate) steps: BTreeMap<u64, &'static str>,
    /// Step number → when it started (`step:spawned`, or the first `step:started`).
    pub(crate) step_started: BTreeMap<u64, u64>,
    /// Step number → duration, once finished: the event's `duration`, else from its start.
    pub(crate) step_durations: BTreeMap<u64, Option<u64>>,
}

/// Replays `events` (as stored, in `seq` order).
pub(crate) fn replay(events: &[Value]) -> Predicted {
    let mut p = Predicted {
        // A session an event creates is under way (contract §2: events create sessions).
        status: "in_progress",
        ..Predicted::default()
    };
    for ev in events {
        p.event_count += 1;
        p.started_at = p.started_at.or(ev["timestamp"].as_u64());
        apply(&mut p, ev);
    }
    p
}

fn text<'a>(ev: &'a Value, key: &str) -> Option<&'a str> {
    ev.get(key).and_then(Value::as_str)
}

fn apply(p: &mut Predicted, ev: &Value) {
    let chain_id = text(ev, "chainId").map(str::to_owned);
    match text(ev, "type").unwrap_or_default() {
        "session:ended" => {
            p.status = if text(ev, "status") == Some("failed") {
                "failed"
            } else {
                "completed"
            };
            p.ended_at = ev["timestamp"].as_u64();
            p.duration = ev["duration"]
                .as_u64()
                .or_else(|| Some(p.ended_at?.saturating_sub(p.started_at?)));
            p.conversation = Some("idle");
        }
        "interaction:awaiting-input" => p.conversation = Some("awaiting_input"),
        "interaction:input-received" => p.conversation = Some("active"),
        "chain:compiled" => {
            let Some(id) = chain_id else { return };
            let steps = ev["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["stepNumber"].as_u64())
                .map(|n| (n, "pending"))
                .collect();
            p.chains.insert(
                id.clone(),
                PredictedChain {
                    status: "pending",
                    steps,
                    ..PredictedChain::default()
                },
            );
            p.current_chain = Some(id);
        }
        "chain:started" => {
            if let Some(chain) = chain_of(p, chain_id) {
                chain.status = "in_progress";
            }
        }
        "chain:completed" => {
            if let Some(chain) = chain_of(p, chain_id) {
                chain.status = match text(ev, "status") {
                    Some("failed") => "failed",
                    Some("skipped") => "skipped",
                    _ => "completed",
                };
                p.chains_completed += 1;
            }
        }
        kind @ ("step:spawned" | "step:started") => {
            if let (Some(chain), Some(n)) = (chain_of(p, chain_id), ev["stepNumber"].as_u64()) {
                chain.steps.insert(n, "in_progress");
                if let Some(ts) = ev["timestamp"].as_u64()
                    && (kind == "step:spawned" || !chain.step_started.contains_key(&n))
                {
                    chain.step_started.insert(n, ts);
                }
                if chain.status == "pending" {
                    chain.status = "in_progress";
                }
            }
        }
        kind @ ("step:completed" | "step:failed") => {
            let outcome = if kind == "step:failed" {
                "failed"
            } else {
                match text(ev, "status") {
                    Some("failed") => "failed",
                    Some("skipped") => "skipped",
                    _ if ev["succeeded"] == Value::Bool(false) => "failed",
                    _ => "completed",
                }
            };
            if let (Some(chain), Some(n)) = (chain_of(p, chain_id), ev["stepNumber"].as_u64()) {
                chain.steps.insert(n, outcome);
                let started = chain.step_started.get(&n).copied();
                let duration = ev["duration"]
                    .as_u64()
                    .or_else(|| Some(ev["timestamp"].as_u64()?.saturating_sub(started?)));
                chain.step_durations.insert(n, duration);
            }
            // Every finished step counts, whether or not its chain is still known.
            p.steps_executed += 1;
        }
        _ => {}
    }
}

/// The chain an event names, else the session's current chain.
fn chain_of(p: &mut Predicted, id: Option<String>) -> Option<&mut PredictedChain> {
    let id = id.or_else(|| p.current_chain.clone())?;
    p.chains.get_mut(&id)
}

/// Where afw's read of the session (`GET /api/sessions/:id`, with its chains) differs from
/// the prediction, one line each. `popped`: an input item was handed out for the session,
/// which sets its conversation state to `idle` (contract §2) at a moment the event order
/// does not tell, so the conversation state is not compared.
pub(crate) fn differences(
    p: &Predicted,
    read: &Value,
    popped: bool,
    rfc3339: impl Fn(u64) -> String,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, want: Value, got: &Value| {
        if &want != got {
            out.push(format!("{name}: expected {want}, read {got}"));
        }
    };
    let count = |v: &Value| Value::from(v.as_u64().unwrap_or(0));
    field("status", Value::from(p.status), &read["status"]);
    field(
        "startedAt",
        p.started_at.map(&rfc3339).map_or(Value::Null, Value::from),
        &read["startedAt"],
    );
    field(
        "endedAt",
        p.ended_at.map(&rfc3339).map_or(Value::Null, Value::from),
        &read["endedAt"],
    );
    field(
        "duration",
        p.duration.map_or(Value::Null, Value::from),
        &read["duration"],
    );
    if !popped {
        field(
            "conversationState",
            p.conversation.map_or(Value::Null, Value::from),
            &read["conversationState"],
        );
    }
    field(
        "totalStepsExecuted",
        Value::from(p.steps_executed),
        &count(&read["totalStepsExecuted"]),
    );
    field(
        "totalChainsCompleted",
        Value::from(p.chains_completed),
        &count(&read["totalChainsCompleted"]),
    );
    field(
        "eventCount",
        Value::from(p.event_count),
        &read["eventCount"],
    );
    field(
        "currentChain",
        p.current_chain.clone().map_or(Value::Null, Value::from),
        &read["currentChain"],
    );
    let chains: BTreeMap<&str, &Value> = read["chains"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["id"].as_str()?, c)))
        .collect();
    let ids = |m: &BTreeMap<&str, &Value>| m.keys().map(|k| (*k).to_owned()).collect::<Vec<_>>();
    if p.chains.keys().cloned().collect::<Vec<_>>() != ids(&chains) {
        out.push(format!(
            "chains: expected {:?}, read {:?}",
            p.chains.keys().collect::<Vec<_>>(),
            ids(&chains)
        ));
        return out;
    }
    for (id, want) in &p.chains {
        let got = chains[id.as_str()];
        if got["status"] != want.status {
            out.push(format!(
                "chain {id} status: expected {}, read {}",
                want.status, got["status"]
            ));
        }
        let steps: BTreeMap<u64, &str> = got["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| Some((s["stepNumber"].as_u64()?, s["status"].as_str()?)))
            .collect();
        if steps
            != want
                .steps
                .iter()
                .map(|(n, s)| (*n, *s))
                .collect::<BTreeMap<_, _>>()
        {
            out.push(format!(
                "chain {id} steps: expected {:?}, read {steps:?}",
                want.steps
            ));
        }
        let durations: BTreeMap<u64, Option<u64>> = got["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| Some((s["stepNumber"].as_u64()?, s["duration"].as_u64())))
            .filter(|(n, _)| want.step_durations.contains_key(n))
            .collect();
        if durations != want.step_durations {
            out.push(format!(
                "chain {id} step durations: expected {:?}, read {durations:?}",
                want.step_durations
            ));
        }
    }
    out
}
