//! 1. Acknowledged writes are stored at the end, unless the plan destroyed Redis data
//!    (then the loss is counted and reported, not hidden).

use std::collections::{BTreeMap, BTreeSet};

use super::{Finals, Report, violation};
use crate::record::Record;
use crate::world::Run;

pub(super) fn check(run: &Run, records: &[&Record], finals: &Finals<'_>, report: &mut Report) {
    let mut acked: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for r in records {
        if let Record::Post {
            session,
            n,
            status: 201,
            ..
        } = r
        {
            acked.entry(session.as_str()).or_default().insert(*n);
        }
    }
    for (session, ns) in &acked {
        report.checks += 1;
        let Some((events, _)) = finals.get(session) else {
            violation(
                report,
                "1 acknowledged writes survive",
                format!("{session}: final read failed"),
            );
            continue;
        };
        let stored: BTreeSet<u64> = events.iter().filter_map(|(_, n)| *n).collect();
        let missing: Vec<u64> = ns.iter().copied().filter(|n| !stored.contains(n)).collect();
        if missing.is_empty() {
            continue;
        }
        if run.plan.destroys_data() {
            report.lost_by_plan += missing.len();
        } else {
            violation(
                report,
                "1 acknowledged writes survive",
                format!("{session}: acknowledged but not stored: {missing:?}"),
            );
        }
    }
}
