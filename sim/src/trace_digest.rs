//! A digest of every tracing event a run emits, at every level: turmoil's packet trace
//! (each send, delivery and receive on the simulated network) and afw's own logs. No
//! timestamps go in, so equal runs give equal digests; it is far stricter than the digest
//! of client-visible records, as a single packet delivered one step later changes it.
//!
//! A packet's payload goes in as its length, not its bytes: two byte fields come from
//! outside the simulation and change no behaviour, hyper's `date` header (the real clock,
//! in the HTTP/1.1 responses and WebSocket handshakes) and the WebSocket client's masking
//! keys (tungstenite's own RNG). Lengths, order and timing of every packet are covered.

use std::fmt::{Debug, Write};
use std::hash::{Hash, Hasher};

use afw::hash::Fnv1a;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::world::{self, Run};

#[derive(Default)]
struct State {
    hasher: Fnv1a,
    events: u64,
}

/// A tracing layer hashing every event's target, level and fields, in order.
#[derive(Clone, Default)]
pub struct TraceDigest {
    state: Arc<Mutex<State>>,
}

impl TraceDigest {
    /// The digest so far, and how many events went into it.
    pub fn finish(&self) -> (String, u64) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (format!("{:016x}", state.hasher.finish()), state.events)
    }
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let text = format!("{value:?}");
        // turmoil prints a segment as `TCP [0x48, 0x54, ...]`: keep the kind and length.
        let text = match (text.find(" ["), text.ends_with(']')) {
            (Some(at), true) => {
                let bytes = &text[at + 2..text.len() - 1];
                let len = if bytes.is_empty() {
                    0
                } else {
                    bytes.matches(',').count() + 1
                };
                format!("{} len={len}", &text[..at])
            }
            _ => text,
        };
        let _ = write!(self.0, "{}={text};", field.name());
    }
}

impl<S: Subscriber> Layer<S> for TraceDigest {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = format!("{} {} ", meta.level(), meta.target());
        event.record(&mut Fields(&mut line));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        line.hash(&mut state.hasher);
        state.events += 1;
    }
}

/// Runs a seed with every tracing event of the run (on this thread) hashed.
pub fn run_traced(seed: u64) -> (Run, TraceDigest) {
    let digest = TraceDigest::default();
    let subscriber = tracing_subscriber::registry().with(digest.clone());
    let run = tracing::subscriber::with_default(subscriber, || world::run(seed));
    (run, digest)
}
