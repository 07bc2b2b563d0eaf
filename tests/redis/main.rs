//! afw against real `redis-server`s: the storage behaviours on both backends, several
//! instances sharing one Redis, outages and recovery, persistence, TTLs and key layout.

mod exactly_once;
#[path = "../api/fuzz_findings.rs"]
mod fuzz_findings;
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
mod instances;
mod operations;
mod outage;
mod server;
mod shared;
