//! Deriving sessions and chains from events (contract §2, "Events").
//!
//! Pure functions over a session and its chains: a storage backend calls [`apply_event`]
//! inside the same atomic step that stores the event, so a reader never sees an event
//! without its effect. Nothing here touches storage, time sources or the network.

use serde_json::{Map, Value};

use crate::domain::model::{
    Chain, ChainStep, ConversationState, EventType, LastPrompt, NewEvent, Session, SessionStatus,
    Status, Timestamp,
};

/// What an event changed beyond the session itself, for the store's indexes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    /// A chain id this event created (or recompiled).
    pub chain_compiled: Option<String>,
}

/// The session an event creates when it names an unknown session.
pub(crate) fn session_for_unknown(ev: &NewEvent, now: Timestamp) -> Session {
    Session::new(
        ev.session_id.clone(),
        SessionStatus::InProgress,
        ev.timestamp,
        now,
    )
}

/// Applies one event to its session and chains. `now` is the server's clock.
pub(crate) fn apply_event(
    session: &mut Session,
    chains: &mut Vec<Chain>,
    ev: &NewEvent,
    now: Timestamp,
) -> Effects {
    let mut effects = Effects::default();
    session.event_count += 1;
    session.last_activity_at = session.last_activity_at.max(now);
    let ts = ev.timestamp;

    match ev.kind {
        EventType::SessionStarted => session_started(session, ev),
        EventType::SessionEnded => session_ended(session, ev),
        EventType::ChainCompiled => effects.chain_compiled = chain_compiled(session, chains, ev),
        EventType::ChainStarted => {
            if let Some(chain) = target_chain(session, chains, ev) {
                chain.status = Status::InProgress;
                chain.started_at = Some(ts);
            }
        }
        EventType::ChainCompleted => {
            let mut completed = false;
            if let Some(chain) = target_chain(session, chains, ev) {
                complete_chain(chain, ev);
                completed = true;
            }
            if completed {
                bump(&mut session.total_chains_completed);
            }
        }
        EventType::StepSpawned | EventType::StepStarted => step_running(session, chains, ev),
        EventType::StepCompleted | EventType::StepFailed => {
            step_finished(session, chains, ev);
            bump(&mut session.total_steps_executed);
        }
        EventType::InteractionAwaitingInput => awaiting_input(session, ev),
        EventType::InteractionInputReceived => {
            session.conversation_state = Some(ConversationState::Active);
        }
        EventType::ErrorOccurred => critical_error(session, ev),
        EventType::FileCreated
        | EventType::FileModified
        | EventType::FileDeleted
        | EventType::RegistryLineUpdated
        | EventType::ExecutionLogCreated
        | EventType::TerminalOutput
        | EventType::WarningOccurred => {}
    }
    effects
}

/// `session:started`: where and by whom the session runs; a pending session starts.
fn session_started(session: &mut Session, ev: &NewEvent) {
    if let Some(cwd) = ev.str_field("cwd") {
        session.cwd = cwd.to_owned();
    }
    set_opt(&mut session.hostname, ev.str_field("hostname"));
    set_opt(&mut session.platform, ev.str_field("platform"));
    set_opt(&mut session.user, ev.str_field("user"));
    if session.status == SessionStatus::Pending {
        session.status = SessionStatus::InProgress;
    }
}

/// `session:ended`: the final status (failed only when the event says so), end, duration,
/// reason and summary.
fn session_ended(session: &mut Session, ev: &NewEvent) {
    let ts = ev.timestamp;
    session.status = match ev.str_field("status").and_then(SessionStatus::parse) {
        Some(SessionStatus::Failed) => SessionStatus::Failed,
        _ => SessionStatus::Completed,
    };
    session.ended_at = Some(ts);
    session.duration = ev
        .u64_field("duration")
        .or_else(|| Some(ts.0.saturating_sub(session.started_at.0)));
    set_opt(
        &mut session.end_reason,
        ev.str_field("reason").or_else(|| ev.str_field("endReason")),
    );
    set_opt(&mut session.summary, ev.str_field("summary"));
    session.conversation_state = Some(ConversationState::Idle);
}

/// `chain:compiled`: a new chain (or a recompiled one, replaced whole) becomes current;
/// `None` once the session holds [`MAX_CHAINS_PER_SESSION`] chains.
fn chain_compiled(session: &mut Session, chains: &mut Vec<Chain>, ev: &NewEvent) -> Option<String> {
    let ts = ev.timestamp;
    let id = ev
        .str_field("chainId")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}-{}", ev.session_id, ts.0));
    let chain = compile_chain(&id, ev);
    let full = chains.len() >= MAX_CHAINS_PER_SESSION;
    match chains.iter_mut().find(|c| c.id == id) {
        Some(existing) => *existing = chain,
        None if full => {
            // The event is stored; it derives no more chains (memory stays bounded).
            tracing::debug!(session = %ev.session_id, chain = %id, "chain cap reached");
            return None;
        }
        None => chains.push(chain),
    }
    session.current_chain = Some(id.clone());
    Some(id)
}

/// `step:spawned` / `step:started`: the step runs, and so does its chain.
fn step_running(session: &Session, chains: &mut [Chain], ev: &NewEvent) {
    let ts = ev.timestamp;
    if let Some(chain) = target_chain(session, chains, ev)
        && let Some(step) = target_step(chain, ev)
    {
        step.status = Status::InProgress;
        if ev.kind == EventType::StepSpawned || step.started_at.is_none() {
            step.started_at = Some(ts);
        }
        let n = step.step_number;
        chain.current_step = Some(n);
        if chain.status == Status::Pending {
            chain.status = Status::InProgress;
            chain.started_at.get_or_insert(ts);
        }
    }
}

/// `step:completed` / `step:failed`: the step's outcome, end, duration and output.
fn step_finished(session: &Session, chains: &mut [Chain], ev: &NewEvent) {
    let ts = ev.timestamp;
    if let Some(chain) = target_chain(session, chains, ev)
        && let Some(step) = target_step(chain, ev)
    {
        step.status = if ev.kind == EventType::StepFailed {
            Status::Failed
        } else {
            match ev.str_field("status").and_then(SessionStatus::parse) {
                Some(s @ (Status::Failed | Status::Skipped | Status::Completed)) => s,
                _ if ev.fields.get("succeeded") == Some(&Value::Bool(false)) => Status::Failed,
                _ => Status::Completed,
            }
        };
        step.completed_at = Some(ts);
        step.duration = ev.u64_field("duration").or_else(|| {
            step.started_at
                .map(|started| ts.0.saturating_sub(started.0))
        });
        for (key, slot) in [
            ("result", &mut step.result),
            ("error", &mut step.error),
            ("learning", &mut step.learning),
        ] {
            if let Some(v) = ev.fields.get(key).filter(|v| !v.is_null()) {
                *slot = Some(v.clone());
            }
        }
    }
}

/// `interaction:awaiting-input`: the session waits, and the prompt is kept.
fn awaiting_input(session: &mut Session, ev: &NewEvent) {
    let ts = ev.timestamp;
    session.conversation_state = Some(ConversationState::AwaitingInput);
    session.last_prompt = Some(LastPrompt {
        text: ev
            .str_field("question")
            .or_else(|| ev.str_field("promptText"))
            .unwrap_or_default()
            .to_owned(),
        kind: ev
            .str_field("inputType")
            .or_else(|| ev.str_field("promptType"))
            .unwrap_or("text")
            .to_owned(),
        quick_responses: ev
            .fields
            .get("quickResponses")
            .and_then(Value::as_array)
            .cloned(),
        timestamp: ts,
    });
}

/// `error:occurred` with severity `critical` is kept on the session.
fn critical_error(session: &mut Session, ev: &NewEvent) {
    if ev.str_field("severity") == Some("critical") {
        let entry = ev
            .fields
            .get("error")
            .or_else(|| ev.fields.get("message"))
            .cloned()
            .unwrap_or(Value::Null);
        session
            .critical_errors
            .get_or_insert_with(Vec::new)
            .push(entry);
    }
}

fn set_opt(slot: &mut Option<String>, value: Option<&str>) {
    if let Some(v) = value {
        *slot = Some(v.to_owned());
    }
}

fn bump(counter: &mut Option<u64>) {
    *counter = Some(counter.unwrap_or(0) + 1);
}

/// The chain an event names (`chainId`), else the session's current chain.
fn target_chain<'a>(
    session: &Session,
    chains: &'a mut [Chain],
    ev: &NewEvent,
) -> Option<&'a mut Chain> {
    let id = ev
        .str_field("chainId")
        .or(session.current_chain.as_deref())?;
    chains.iter_mut().find(|c| c.id == id)
}

/// Chains one session derives at most; later `chain:compiled` events with new chain ids
/// are stored but derive no chain.
pub(crate) const MAX_CHAINS_PER_SESSION: usize = 1000;

/// The step an event names by `stepNumber`; a step the chain did not declare is added.
fn target_step<'a>(chain: &'a mut Chain, ev: &NewEvent) -> Option<&'a mut ChainStep> {
    let n = u32::try_from(ev.u64_field("stepNumber")?)
        .ok()
        .filter(|n| *n >= 1)?;
    let index = match chain.steps.iter().position(|s| s.step_number == n) {
        Some(i) => i,
        None => {
            chain.steps.push(step_from(n, &ev.fields));
            chain.steps.sort_by_key(|s| s.step_number);
            chain.steps.iter().position(|s| s.step_number == n)?
        }
    };
    let step = &mut chain.steps[index];
    // Hooks often know more at spawn time than the compiled plan did.
    if step.action.is_empty()
        && let Some(a) = ev.str_field("action")
    {
        step.action = a.to_owned();
    }
    if step.model.is_none() {
        set_opt(&mut step.model, ev.str_field("model"));
    }
    Some(step)
}

fn compile_chain(id: &str, ev: &NewEvent) -> Chain {
    let steps = ev
        .fields
        .get("steps")
        .and_then(Value::as_array)
        .map(|steps| {
            steps
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let s = s.as_object()?;
                    let n = s
                        .get("stepNumber")
                        .and_then(crate::domain::model::whole_number)
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| *n >= 1)
                        .unwrap_or(i as u32 + 1);
                    Some(step_from(n, s))
                })
                .collect()
        })
        .unwrap_or_default();
    Chain {
        id: id.to_owned(),
        session_id: ev.session_id.clone(),
        title: ev.str_field("title").unwrap_or("Untitled chain").to_owned(),
        steps,
        source: ev.str_field("source").unwrap_or("flow").to_owned(),
        reference: ev.str_field("ref").map(str::to_owned),
        status: Status::Pending,
        compiled_at: ev.timestamp,
        started_at: None,
        completed_at: None,
        duration: None,
        successful_steps: None,
        failed_steps: None,
        skipped_steps: None,
        summary: None,
        execution_mode: ev.str_field("executionMode").map(str::to_owned),
        current_step: None,
    }
}

fn step_from(n: u32, s: &Map<String, Value>) -> ChainStep {
    let text = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_owned);
    ChainStep {
        step_number: n,
        action: text("action").unwrap_or_default(),
        model: text("model"),
        inputs: match s.get("inputs") {
            Some(v @ Value::Object(_)) => v.clone(),
            _ => Value::Object(Map::new()),
        },
        waits_for: s
            .get("waitsFor")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        status: Status::Pending,
        description: text("description"),
        started_at: None,
        completed_at: None,
        duration: None,
        result: None,
        error: None,
        learning: None,
    }
}

fn complete_chain(chain: &mut Chain, ev: &NewEvent) {
    let ts = ev.timestamp;
    chain.status = match ev.str_field("status").and_then(SessionStatus::parse) {
        Some(s @ (Status::Failed | Status::Skipped)) => s,
        _ => Status::Completed,
    };
    chain.completed_at = Some(ts);
    chain.duration = ev.u64_field("duration").or_else(|| {
        chain
            .started_at
            .map(|started| ts.0.saturating_sub(started.0))
    });
    let count = |status: Status| chain.steps.iter().filter(|s| s.status == status).count() as u64;
    chain.successful_steps = ev
        .u64_field("successfulSteps")
        .or(Some(count(Status::Completed)));
    chain.failed_steps = ev.u64_field("failedSteps").or(Some(count(Status::Failed)));
    chain.skipped_steps = ev
        .u64_field("skippedSteps")
        .or(Some(count(Status::Skipped)));
    set_opt(&mut chain.summary, ev.str_field("summary"));
    chain.current_step = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ingest::parse_event;

    fn replay(lines: &[&str]) -> (Session, Vec<Chain>) {
        let first = parse_event(bytes::Bytes::copy_from_slice(lines[0].as_bytes()), "").unwrap();
        let mut session = session_for_unknown(&first, Timestamp(1));
        let mut chains = Vec::new();
        for line in lines {
            let ev = parse_event(bytes::Bytes::copy_from_slice(line.as_bytes()), "").unwrap();
            apply_event(&mut session, &mut chains, &ev, ev.timestamp);
        }
        (session, chains)
    }

    #[test]
    fn the_fixture_session_derives_its_chain_steps_and_end() {
        let fixture = include_str!("../../tests/fixtures/hook-session.jsonl");
        let lines: Vec<&str> = fixture.lines().filter(|l| !l.trim().is_empty()).collect();
        let (session, chains) = replay(&lines);
        assert_eq!(session.cwd, "/home/alice/src/shop-api");
        assert_eq!(session.user.as_deref(), Some("alice"));
        assert_eq!(session.event_count, lines.len() as u64);
        assert_eq!(chains.len(), 1);
        let chain = &chains[0];
        assert_eq!(chain.title, "Fix checkout rounding bug");
        assert_eq!(chain.steps.len(), 3);
        assert_eq!(chain.steps[0].status, Status::Completed);
        assert_eq!(chain.steps[0].duration, Some(35012));
        assert_eq!(
            chain.steps[1].learning,
            Some(Value::from("Round once, at the end"))
        );
        assert_eq!(session.current_chain.as_deref(), Some(chain.id.as_str()));
        assert!(session.total_steps_executed.unwrap_or(0) >= 2);
    }

    #[test]
    fn session_ended_sets_status_end_and_duration() {
        let (session, _) = replay(&[
            r#"{"type":"session:started","sessionId":"s","timestamp":"2026-01-01T00:00:00.000Z","cwd":"/w"}"#,
            r#"{"type":"session:ended","sessionId":"s","timestamp":"2026-01-01T00:01:00.000Z","reason":"user_exit"}"#,
        ]);
        assert_eq!(session.status, SessionStatus::Completed);
        assert_eq!(session.duration, Some(60_000));
        assert_eq!(session.end_reason.as_deref(), Some("user_exit"));
        assert_eq!(
            session.ended_at.map(Timestamp::to_rfc3339).as_deref(),
            Some("2026-01-01T00:01:00.000Z")
        );
    }

    #[test]
    fn steps_with_nulls_and_undeclared_steps_are_tolerated() {
        let (_, chains) = replay(&[
            r#"{"type":"chain:compiled","sessionId":"s","timestamp":1000,"chainId":"c1","title":null,"steps":[{"stepNumber":1,"action":null,"inputs":null,"waitsFor":null}],"source":null,"ref":null}"#,
            r#"{"type":"step:spawned","sessionId":"s","timestamp":2000,"stepNumber":4,"action":null}"#,
            r#"{"type":"step:failed","sessionId":"s","timestamp":2500,"stepNumber":4,"error":"boom"}"#,
            r#"{"type":"chain:completed","sessionId":"s","timestamp":3000,"chainId":"c1"}"#,
        ]);
        let c = &chains[0];
        assert_eq!(c.title, "Untitled chain");
        assert_eq!(c.source, "flow");
        assert_eq!(
            c.steps.iter().map(|s| s.step_number).collect::<Vec<_>>(),
            [1, 4]
        );
        assert_eq!(c.steps[1].status, Status::Failed);
        assert_eq!(c.steps[1].duration, Some(500));
        assert_eq!(c.failed_steps, Some(1));
        assert_eq!(c.status, Status::Completed);
        assert_eq!(c.duration, Some(1000));
    }
}
