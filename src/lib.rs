//! afw — the ActionFlows backend.
//!
//! Claude Code hooks post session, chain, step and file events; dashboards follow sessions
//! live over a WebSocket and send commands and input back, which the hooks poll for.
//!
//! The service is assembled by [`app::build`] from injected [`ports`] (clock, ids,
//! connector) and a [`storage::Store`], so the same routes run in production, in tests and
//! in simulation.
//!
//! # Layout
//!
//! Ports and adapters, read from the inside out:
//!
//! * [`domain`]: what sessions, events, chains, commands and input are, and the rules that
//!   turn hook events into sessions and chains. Pure: no I/O, no clock, no HTTP.
//! * [`storage`]: the `Store` port (one atomic operation per method) and its adapters,
//!   `memory` and `redis` (connection link, keys, codecs, the Pub/Sub channel and bridge,
//!   Lua scripts).
//! * [`archive`]: the archive port (snapshots of ended and expiring sessions, read by the
//!   history routes), its `dir` and `postgres` adapters, and the archiver task.
//! * [`bus`]: local fan-out of stored events and notices to this instance's WebSocket
//!   clients.
//! * [`http`]: the driving adapter: the edge (host, origin, CORS, keys, rate limits), one
//!   module per resource, the WebSocket, and the one error mapping.
//! * `server`: the connection loop under the router (caps, timeouts).
//! * [`logs`]: the production log subscriber (filter, line format, writer thread).
//! * [`ports`] and [`config`]: what differs between production, tests and simulation, and
//!   the settings.
//! * [`app`]: the composition root, the only module that knows every other.
//!
//! Dependencies point inwards (`http` → `storage` → `domain`); `tests/api/layout.rs` fails
//! on any import cycle. Items are `pub(crate)` unless `main.rs`, `sim/` or `tests/` use
//! them.
//!
//! "contract §N" in comments names a section of `docs/contract.md`.

#![warn(unreachable_pub)]

pub mod app;
pub mod archive;
pub mod bus;
pub mod config;
pub mod domain;
pub mod hash;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod ports;
pub(crate) mod server;
pub mod storage;
mod sync;
