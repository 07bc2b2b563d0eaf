//! afw-sim: the deterministic simulation harness of afw.
//!
//! So far it holds the simulated Redis ([`redis_host`]), held to a real `redis-server` by
//! the conformance suite in the workspace's `tests/conformance`. The turmoil scenarios,
//! fault plans, invariant checker and replay binary are the next steps (see the README).

pub mod redis_host;
