//! The domain: what a session, an event, a chain, a command and an input item are, and the
//! rules that turn hook events into sessions and chains.
//!
//! Pure code. Nothing here may do I/O, await, lock, read a clock (callers pass `now`) or
//! know HTTP, Redis or the bus; the adapters around it ([`crate::storage`], [`crate::http`])
//! call in, never the other way round.

#[cfg(test)]
pub(crate) mod arbitrary;
pub(crate) mod derive;
pub mod ingest;
pub mod model;
pub(crate) mod session;
