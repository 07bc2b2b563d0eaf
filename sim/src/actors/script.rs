//! What a hook posts: a Claude Code session's life as the real hooks tell it (contract §7),
//! drawn from its own seed: `session:started`; chains compiled with their steps (some
//! fields `null`), started, their steps spawned, started, completed or failed (sometimes
//! out of order, sometimes a step the plan did not list), completed or failed; terminal
//! output; files; a prompt awaiting input and the input received; and, unless the session
//! is cut short, `session:ended`, completed or failed.
//!
//! Bodies only (no `timestamp`, no `n`: the hook adds them when it sends); nothing here
//! may send or record.

use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use crate::plan::SeededRng;

/// The events of one hook session, `len` at most, in the order the hook posts them.
pub(crate) fn hook_script(seed: u64, session: &str, len: usize) -> Vec<Value> {
    let mut rng = SeededRng::seed_from_u64(seed);
    let mut out = vec![json!({
        "type": "session:started",
        "cwd": "/w",
        "hostname": "sim",
        "platform": "linux",
        "user": format!("user-{}", rng.random_range(0..3)),
    })];
    let mut chains = 0;
    while out.len() + 1 < len {
        match rng.random_range(0..10) {
            0..=3 => {
                chains += 1;
                chain(&mut rng, &mut out, &format!("{session}-c{chains}"));
            }
            4 => out.push(json!({
                "type": "terminal:output",
                "output": format!("line {}\n", out.len()),
                "stream": if rng.random_bool(0.8) { "stdout" } else { "stderr" },
            })),
            5 => {
                out.push(json!({
                    "type": "interaction:awaiting-input",
                    "question": format!("continue {}?", out.len()),
                    "inputType": "text",
                    "quickResponses": ["yes", "no"],
                }));
                if rng.random_bool(0.7) {
                    out.push(json!({"type": "interaction:input-received", "input": "yes"}));
                }
            }
            _ => out.push(json!({
                "type": if rng.random_bool(0.5) { "file:modified" } else { "file:created" },
                "path": format!("/w/f{}.rs", rng.random_range(0..20)),
            })),
        }
    }
    out.truncate(len.saturating_sub(1).max(1));
    if rng.random_bool(0.7) {
        let failed = rng.random_bool(0.3);
        out.push(json!({
            "type": "session:ended",
            "status": if failed { "failed" } else { "completed" },
            "reason": if failed { "error" } else { "done" },
            "summary": "sim session",
        }));
    }
    out
}

/// One chain: compiled with 1–4 steps, started, each step run (or skipped), completed.
fn chain(rng: &mut SeededRng, out: &mut Vec<Value>, id: &str) {
    let steps = rng.random_range(1..=4u64);
    let planned: Vec<Value> = (1..=steps)
        .map(|n| {
            json!({
                "stepNumber": n,
                "action": format!("act-{n}"),
                "model": if rng.random_bool(0.5) { Value::Null } else { json!("sonnet") },
                "inputs": {},
                "waitsFor": [],
            })
        })
        .collect();
    out.push(json!({"type": "chain:compiled", "chainId": id, "title": id, "steps": planned}));
    out.push(json!({"type": "chain:started", "chainId": id}));
    // Now and then a step the compiled plan did not list.
    let last = steps + u64::from(rng.random_bool(0.2));
    for n in 1..=last {
        if rng.random_bool(0.8) {
            out.push(
                json!({"type": "step:spawned", "chainId": id, "stepNumber": n, "model": null}),
            );
        }
        if rng.random_bool(0.6) {
            out.push(json!({"type": "step:started", "chainId": id, "stepNumber": n}));
        }
        let end = match rng.random_range(0..10) {
            0 => json!({"type": "step:failed", "chainId": id, "stepNumber": n, "error": "boom"}),
            1 => {
                json!({"type": "step:completed", "chainId": id, "stepNumber": n, "status": "skipped"})
            }
            2 => {
                json!({"type": "step:completed", "chainId": id, "stepNumber": n, "succeeded": false})
            }
            _ => {
                json!({"type": "step:completed", "chainId": id, "stepNumber": n, "result": null, "duration": 5})
            }
        };
        out.push(end);
    }
    let status = if rng.random_bool(0.2) {
        "failed"
    } else {
        "completed"
    };
    out.push(json!({"type": "chain:completed", "chainId": id, "status": status}));
}
