//! afw-sim: the deterministic simulation harness of afw.
//!
//! The production router, Redis adapter and Pub/Sub bridge run inside turmoil on the sim
//! ports ([`ports`]) against a simulated Redis ([`redis_host`], held to a real
//! `redis-server` by the conformance suite in `tests/conformance`). One `u64` seed decides
//! a run; `cargo run -p afw-sim --release -- --seed N` replays it.
//!
//! # Layout
//!
//! * [`plan`]: what a seed draws (instances, clients, faults), in one fixed order, and the
//!   run's timeline.
//! * [`world`]: builds the turmoil world (the Redis host, the instances, the actors) and
//!   steps it, with `faults` starting and healing each fault on time.
//! * `actors`: hooks, dashboards and the viewer, the commander and the hooks' claims, the
//!   typist and input pollers, the checker; each records what it sees into the [`record`]
//!   history and judges nothing.
//! * `model`: the reference model of what afw derives from a session's events.
//! * [`invariants`]: judges a finished run, one module per invariant group.
//! * [`redis_host`]: the simulated Redis, one module per data type, plus Lua, Pub/Sub,
//!   `maxmemory`, stalls and `CLIENT KILL`.
//! * [`archive_host`]: the simulated archive every instance files into, down or slow by
//!   plan.
//! * [`client`], [`ports`], [`trace_digest`]: the sim's HTTP/WebSocket client, its ports,
//!   and the trace digest that proves a replay identical.

#![warn(unreachable_pub)]

mod actors;
pub mod archive_host;
pub mod client;
mod faults;
pub mod invariants;
mod model;
pub mod plan;
pub mod ports;
pub mod record;
pub mod redis_host;
pub mod trace_digest;
pub mod world;
