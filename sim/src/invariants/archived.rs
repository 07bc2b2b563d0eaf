//! 11. Archival. Every hook session with stored events ends up in the archive host once
//!     per incarnation: its rows name only epochs the clients saw for it (one row in all
//!     when no fault destroyed Redis data), and each row is a whole snapshot (the session,
//!     its events in `seq` order, each event once). The row of its final incarnation holds
//!     exactly the events the final read saw, plus the TTL phase's refresh write for the
//!     session it refreshed, with the final read's status and chains. Every acknowledged
//!     event is in one of the session's rows, unless the plan destroyed Redis data (then it
//!     is counted as lost by plan). Past its TTL the session's read answers from the
//!     archive (`archived: true`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{Report, violation};
use crate::archive_host::Row;
use crate::record::{Record, TtlPhase};
use crate::world::Run;

const INVARIANT: &str = "11 archived exactly once";

/// A session's final read: its stored `(seq, n)` and incarnation.
struct FinalRead<'a> {
    events: &'a [(u64, Option<u64>)],
    epoch: Option<&'a str>,
}

/// What the clients saw of one session.
#[derive(Default)]
struct Seen<'a> {
    acked: BTreeSet<u64>,
    epochs: BTreeSet<&'a str>,
    last: Option<FinalRead<'a>>,
    derived: Option<&'a Value>,
    refreshed: bool,
    after_ttl: Vec<(u16, bool)>,
}

fn seen<'a>(records: &[&'a Record]) -> BTreeMap<&'a str, Seen<'a>> {
    let mut out: BTreeMap<&str, Seen<'_>> = BTreeMap::new();
    for r in records {
        match r {
            Record::Post {
                session,
                n,
                status,
                epoch,
                ..
            } => {
                let s = out.entry(session.as_str()).or_default();
                if matches!(status, 200 | 201) {
                    s.acked.insert(*n);
                }
                s.epochs.extend(epoch.as_deref());
            }
            Record::Subscribed { session, epoch, .. } => {
                let s = out.entry(session.as_str()).or_default();
                s.epochs.extend(epoch.as_deref());
            }
            Record::Final {
                session,
                events,
                epoch,
                ..
            } => {
                let s = out.entry(session.as_str()).or_default();
                s.epochs.extend(epoch.as_deref());
                s.last = Some(FinalRead {
                    events,
                    epoch: epoch.as_deref(),
                });
            }
            Record::Derived { session, read, .. } => {
                out.entry(session.as_str()).or_default().derived = Some(read);
            }
            Record::TtlRead {
                session,
                phase,
                session_status,
                archived,
                ..
            } => {
                let s = out.entry(session.as_str()).or_default();
                match phase {
                    TtlPhase::Refreshed => s.refreshed = true,
                    TtlPhase::AfterTtl => s.after_ttl.push((*session_status, *archived)),
                    TtlPhase::BeforeTtl => {}
                }
            }
            _ => {}
        }
    }
    out
}

/// A row's document, read back: its session, its events as `(seq, n)`, its chain count.
struct Document {
    session: Value,
    events: Vec<(u64, Option<u64>)>,
    chains: usize,
}

/// The row as a whole snapshot of `session`'s incarnation `epoch`, or what is wrong with it.
fn document(session: &str, epoch: &str, row: &Row) -> Result<Document, String> {
    let doc: Value = serde_json::from_slice(&row.body).map_err(|e| format!("not JSON: {e}"))?;
    if doc["session"]["id"] != session || doc["epoch"] != epoch || !doc["savedAt"].is_string() {
        return Err(format!(
            "names session {} epoch {} savedAt {}",
            doc["session"]["id"], doc["epoch"], doc["savedAt"]
        ));
    }
    let events: Vec<(u64, Option<u64>)> = doc["events"]
        .as_array()
        .ok_or("no events array")?
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap_or(0), e["n"].as_u64()))
        .collect();
    if events.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err("events out of seq order".into());
    }
    let ns: Vec<u64> = events.iter().filter_map(|(_, n)| *n).collect();
    if ns.iter().collect::<BTreeSet<_>>().len() != ns.len() {
        return Err("an event twice".into());
    }
    let chains = doc["chains"].as_array().ok_or("no chains array")?.len();
    Ok(Document {
        session: doc["session"].clone(),
        events,
        chains,
    })
}

pub(super) fn check(run: &Run, records: &[&Record], report: &mut Report) {
    let rows = run.archive.rows();
    let mut by_session: BTreeMap<&str, Vec<(&str, &Row)>> = BTreeMap::new();
    for ((session, epoch), row) in &rows {
        by_session
            .entry(session.as_str())
            .or_default()
            .push((epoch.as_str(), row));
    }
    for (session, seen) in seen(records) {
        if !session.starts_with("hook-") {
            continue;
        }
        let Some(last) = seen.last.as_ref().filter(|f| !f.events.is_empty()) else {
            continue;
        };
        report.checks += 1;
        let held = by_session.get(session).cloned().unwrap_or_default();
        if let Err(detail) = check_session(run, session, &seen, last, &held, report) {
            violation(report, INVARIANT, format!("{session}: {detail}"));
        }
    }
}

fn check_session(
    run: &Run,
    session: &str,
    seen: &Seen<'_>,
    last: &FinalRead<'_>,
    held: &[(&str, &Row)],
    report: &mut Report,
) -> Result<(), String> {
    let epochs: Vec<&str> = held.iter().map(|(e, _)| *e).collect();
    if let Some(stray) = epochs.iter().find(|e| !seen.epochs.contains(**e)) {
        return Err(format!(
            "archived under epoch {stray}, which no client saw (saw {:?})",
            seen.epochs
        ));
    }
    if !run.plan.destroys_data() && held.len() != 1 {
        return Err(format!(
            "{} rows (epochs {epochs:?}), one incarnation",
            held.len()
        ));
    }
    let mut docs = Vec::new();
    for (epoch, row) in held {
        docs.push((
            *epoch,
            document(session, epoch, row).map_err(|e| format!("epoch {epoch}: {e}"))?,
        ));
    }
    let epoch = last.epoch.ok_or("the final read named no epoch")?;
    let (_, doc) = docs.iter().find(|(e, _)| *e == epoch).ok_or_else(|| {
        format!("not archived in its final incarnation {epoch} (held {epochs:?})")
    })?;
    current(session, seen, last, doc)?;
    let archived: BTreeSet<u64> = docs
        .iter()
        .flat_map(|(_, d)| d.events.iter().filter_map(|(_, n)| *n))
        .collect();
    let missing = seen.acked.iter().filter(|n| !archived.contains(n)).count();
    if missing > 0 {
        if !run.plan.destroys_data() {
            return Err(format!("{missing} acknowledged events in no snapshot"));
        }
        report.archive_lost_by_plan += missing;
    }
    if let Some((status, _)) = seen.after_ttl.iter().find(|(s, a)| !(*s == 200 && *a)) {
        return Err(format!(
            "past its TTL its read answered {status}, not 200 from the archive"
        ));
    }
    Ok(())
}

/// The final incarnation's snapshot is the session's last state: the final read's events
/// (the refreshed session's one more), status and chains.
fn current(
    session: &str,
    seen: &Seen<'_>,
    last: &FinalRead<'_>,
    doc: &Document,
) -> Result<(), String> {
    let extra = doc.events.len().saturating_sub(last.events.len());
    let tail_ok = doc.events[..doc.events.len() - extra] == *last.events
        && doc.events[doc.events.len() - extra..]
            .iter()
            .all(|(_, n)| n.is_none());
    // The TTL phase's refresh write goes to hook-0 (answered or not: unanswered, it may
    // still have landed).
    let extra_ok = match (seen.refreshed, session == "hook-0") {
        (true, _) => extra == 1,
        (false, true) => extra <= 1,
        (false, false) => extra == 0,
    };
    if !tail_ok || !extra_ok {
        return Err(format!(
            "its snapshot holds {} events, the final read {} (refreshed: {})",
            doc.events.len(),
            last.events.len(),
            seen.refreshed
        ));
    }
    if let Some(read) = seen.derived.filter(|_| extra == 0) {
        let chains = read["chains"].as_array().map_or(0, Vec::len);
        if doc.session["status"] != read["status"] || doc.chains != chains {
            return Err(format!(
                "its snapshot has status {} and {} chains, the final read {} and {chains}",
                doc.session["status"], doc.chains, read["status"]
            ));
        }
    }
    Ok(())
}
