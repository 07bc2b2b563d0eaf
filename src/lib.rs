//! afw — the ActionFlows backend.
//!
//! Claude Code hooks post session, chain, step and file events; dashboards follow sessions
//! live over a WebSocket and send commands and input back, which the hooks poll for.
//!
//! The service is assembled by [`app::build`] from injected [`ports`] (clock, ids) and a
//! [`storage::Store`], so the same routes run in production, in tests and in simulation.
//!
//! "contract §N" in comments names a section of `docs/contract.md`.

#![warn(unreachable_pub)]

pub mod app;
pub mod bus;
pub mod config;
pub mod domain;
pub mod hash;
pub mod http;
pub mod ports;
pub(crate) mod server;
pub mod storage;
mod sync;
