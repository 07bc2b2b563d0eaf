//! `afw-sim`: run, replay and sweep simulation seeds.
//!
//!   afw-sim --seed 42            # one seed, with its plan, checks and digest
//!   afw-sim --seeds 0..200       # a sweep; exits 1 if any seed violates an invariant
//!   afw-sim --seed 42 --trace    # with afw's logs at TRACE level

use std::process::ExitCode;
use std::time::{Duration, Instant};

use afw_sim::invariants::{Report, check, digest};
use afw_sim::record::Record;
use afw_sim::world::{Run, run};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "afw-sim",
    about = "Deterministic simulation of afw: replay or sweep seeds"
)]
struct Cli {
    /// Run this one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run a range of seeds, e.g. 0..200.
    #[arg(long)]
    seeds: Option<String>,
    /// Log afw's tracing output at TRACE level (replays one seed readably).
    #[arg(long)]
    trace: bool,
    /// Print every recorded client observation of the run.
    #[arg(long)]
    history: bool,
}

fn parse_range(s: &str) -> Option<std::ops::Range<u64>> {
    let (a, b) = s.split_once("..")?;
    Some(a.trim().parse().ok()?..b.trim().parse().ok()?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = if cli.trace { "trace" } else { "off" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_owned()))
        .try_init();
    let seeds: Vec<u64> = match (cli.seed, cli.seeds.as_deref().map(parse_range)) {
        (Some(s), _) => vec![s],
        (None, Some(Some(r))) => r.collect(),
        (None, Some(None)) => {
            eprintln!("afw-sim: --seeds takes a range such as 0..200");
            return ExitCode::from(2);
        }
        (None, None) => vec![0],
    };
    let started = Instant::now();
    let mut failed = Vec::new();
    let (mut stepped, mut jumped) = (Duration::ZERO, Duration::ZERO);
    let (mut checks, mut faults) = (0usize, 0usize);
    for seed in &seeds {
        let result = run(*seed);
        let report = check(&result);
        if cli.history {
            for (at, r) in &result.history.records {
                println!("[{at} ms] {r:?}");
            }
        }
        stepped += result.stepped;
        jumped += result.jumped;
        checks += report.checks;
        faults += result.plan.faults.len();
        print_seed(*seed, &result, &report);
        if !report.violations.is_empty() {
            failed.push(*seed);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "{} seeds in {:.1} s ({:.0} seeds/min), simulated/wall time {:.0}x stepped ({:.0} s), {:.0}x with the clock jumps over idle stretches ({:.1} h), {} faults injected, {} invariant checks, {} failed{}",
        seeds.len(),
        wall,
        seeds.len() as f64 / wall * 60.0,
        stepped.as_secs_f64() / wall.max(1e-9),
        stepped.as_secs_f64(),
        (stepped + jumped).as_secs_f64() / wall.max(1e-9),
        (stepped + jumped).as_secs_f64() / 3600.0,
        faults,
        checks,
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {failed:?}")
        }
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// One line per seed; for a failing seed its violations, its last records and how to
/// replay it.
fn print_seed(seed: u64, result: &Run, report: &Report) {
    let verdict = if report.violations.is_empty() {
        "ok"
    } else {
        "VIOLATED"
    };
    println!(
        "seed {seed}: {verdict}; {} instances, {} hooks, {} dashboards{}, faults {:?}; {} checks, {} lost by plan, {} lost to the archive by plan, {} input in doubt, {} commands in doubt, {} deletes undone in doubt, {} refused but stored, {} unanswered but stored; digest {}",
        result.plan.instances,
        result.plan.hooks,
        result.plan.dashboards,
        result
            .plan
            .slow_dashboard
            .map(|d| format!(" (dashboard {d} slow)"))
            .unwrap_or_default(),
        result
            .plan
            .faults
            .iter()
            .map(|f| format!("{:?}@{}ms", f.kind, f.at_ms))
            .collect::<Vec<_>>(),
        report.checks,
        report.lost_by_plan,
        report.archive_lost_by_plan,
        report.input_in_doubt,
        report.commands_in_doubt,
        report.deletes_undone_in_doubt,
        report.refused_but_stored,
        report.stored_unanswered,
        digest(result),
    );
    if !report.violations.is_empty() {
        for v in &report.violations {
            println!("  invariant {}: {}", v.invariant, v.detail);
        }
        println!("  last records:");
        let records = &result.history.records;
        for (at, r) in records.iter().skip(records.len().saturating_sub(12)) {
            if !matches!(r, Record::Final { .. }) {
                println!("    [{at} ms] {r:?}");
            }
        }
        println!("  replay: cargo run -p afw-sim --release -- --seed {seed} --trace");
    }
}
