//! afw-sim: the deterministic simulation harness of afw.
//!
//! The production router, Redis adapter and Pub/Sub bridge run inside turmoil on the sim
//! ports ([`ports`]) against a simulated Redis ([`redis_host`], held to a real
//! `redis-server` by the conformance suite in `tests/conformance`). One `u64` seed draws a
//! plan and a fault schedule ([`plan`]), [`world`] runs it with the [`faults`] and the actors; clients record what they see and
//! [`invariants`] judges it. `cargo run -p afw-sim --release -- --seed N` replays a seed.

#![warn(unreachable_pub)]

mod actors;
pub mod client;
mod faults;
pub mod invariants;
pub mod plan;
pub mod ports;
pub mod record;
pub mod redis_host;
pub mod trace_digest;
pub mod world;
