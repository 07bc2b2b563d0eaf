//! Determinism is a feature: the same seed gives the same run, to the digest; and the
//! client-visible history of a small seed is pinned by a snapshot.

use afw_sim::invariants::{check, digest};
use afw_sim::scenario::run;

#[test]
fn the_same_seed_gives_the_same_run_and_different_seeds_differ() {
    let mut digests = Vec::new();
    for seed in [3u64, 7] {
        let first = run(seed);
        let second = run(seed);
        assert_eq!(
            digest(&first),
            digest(&second),
            "seed {seed} is not deterministic"
        );
        let report = check(&first);
        assert!(
            report.violations.is_empty(),
            "seed {seed}: {:?}",
            report.violations
        );
        assert!(report.checks > 0);
        digests.push(digest(&first));
    }
    assert_ne!(digests[0], digests[1]);
}

#[test]
fn the_client_visible_history_of_seed_3_is_pinned() {
    let result = run(3);
    let lines: Vec<String> = result
        .history
        .records
        .iter()
        .map(|(at, r)| format!("[{at} ms] {r:?}"))
        .collect();
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots"),
        prepend_module_to_snapshot => false,
    }, {
        insta::assert_debug_snapshot!("sim_seed_3_history", (format!("{:?}", result.plan), lines));
    });
}
