//! What the clients saw, in the order it happened: the [`History`] the invariant checker
//! ([`crate::invariants`]) judges after a run.
//!
//! Data only: nothing here may judge a record or talk to an instance.

use std::cell::RefCell;
use std::rc::Rc;

/// What a client saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A hook's POST of event `n` of `session`, sent to `instance` at `started`: the
    /// status, and the seq when stored.
    Post {
        session: String,
        n: u64,
        instance: usize,
        started: u64,
        /// 0: no answer (timeout, connection refused or dropped).
        status: u16,
        seq: Option<u64>,
        /// Answered as a duplicate of an event stored earlier (its original `seq`).
        duplicate: bool,
        /// The incarnation of the session the answer's `seq` counts in.
        epoch: Option<String>,
    },
    /// A hook read its session (`what`: "session") or polled its commands ("commands").
    Read {
        session: String,
        what: &'static str,
        instance: usize,
        started: u64,
        status: u16,
    },
    /// A dashboard user opened a session's page during the run: `GET /api/sessions/:id`
    /// (the session with its chains) as it answered 200.
    Viewed {
        session: String,
        read: serde_json::Value,
    },
    /// A dashboard user set a session's metadata (`PUT /api/sessions/:id`, `{"metadata":
    /// {"note": note}}`): the status (0: no answer).
    Updated {
        session: String,
        note: String,
        instance: usize,
        started: u64,
        status: u16,
    },
    /// A dashboard queued input item `item` (each attempt is a new item).
    InputQueued {
        session: String,
        item: String,
        instance: usize,
        started: u64,
        status: u16,
    },
    /// A poll of a session's input queue (a long poll when `timeout_ms > 0`): status 0 when
    /// no answer came, and the item it popped.
    InputPolled {
        session: String,
        instance: usize,
        started: u64,
        timeout_ms: u64,
        status: u16,
        item: Option<String>,
    },
    /// A request that got no answer within [`crate::plan::REQUEST_BOUND`].
    Hang { client: String, what: String },
    /// A dashboard (re)subscribed, through `instance`: the confirmation it got.
    Subscribed {
        dashboard: usize,
        instance: usize,
        session: String,
        after: Option<u64>,
        last_seq: u64,
        recovered: Option<bool>,
        /// The session's incarnation the confirmation names (none for a session that does
        /// not exist yet).
        epoch: Option<String>,
    },
    /// A dashboard received an event frame.
    Event {
        dashboard: usize,
        session: String,
        seq: u64,
        n: Option<u64>,
    },
    /// The cleaner posted a scratch session's events: whether every one was acknowledged,
    /// and whether any attempt got no clear refusal (it may be stored after all).
    ScratchWritten {
        session: String,
        acked: bool,
        in_doubt: bool,
    },
    /// A `DELETE /api/sessions/:id` through `instance`: its status (0: no answer).
    Deleted {
        session: String,
        instance: usize,
        started: u64,
        status: u16,
    },
    /// The subscriber of a deleted session (on `instance`; the delete went through `via`
    /// and was answered at `answered`): when `session:deleted` reached it, if it did within
    /// the cleaner's listening window (12 s).
    DeleteHeard {
        session: String,
        instance: usize,
        via: usize,
        answered: u64,
        heard_at: Option<u64>,
    },
    /// A read of a deleted session after its delete was answered: `path` (the session,
    /// its chains, or the listing, with whether it `listed` the session) as `instance`
    /// answered it (0: no answer).
    ReadDeleted {
        session: String,
        instance: usize,
        path: String,
        status: u16,
        listed: Option<bool>,
        /// Answered 200 from the archive (`archived: true`): gone from live storage, its
        /// history kept.
        archived: bool,
    },
    /// A dashboard's connection ended (it will reconnect), with the server's close code
    /// if it sent one (1013: the client could not keep up).
    Disconnected { dashboard: usize, code: Option<u16> },
    /// A dashboard queued a command: its status (0: no answer) and, when created, its id.
    CommandQueued {
        session: String,
        instance: usize,
        started: u64,
        status: u16,
        id: Option<String>,
    },
    /// A command poll (with `?lease=` when `lease` is set): its status (0: no answer) and
    /// the command ids it claimed.
    Claimed {
        session: String,
        instance: usize,
        started: u64,
        lease: Option<u64>,
        status: u16,
        ids: Vec<String>,
    },
    /// A hook acknowledged a command it claimed: the status (0: no answer).
    Acked {
        id: String,
        started: u64,
        status: u16,
    },
    /// The final read of a session's stored events: `(seq, n)`, and the incarnation they
    /// count in.
    Final {
        session: String,
        events: Vec<(u64, Option<u64>)>,
        last_seq: u64,
        epoch: Option<String>,
    },
    /// The final read of a hook session's derived state: its stored events as `GET
    /// /api/events` answered, and the session with its chains as `GET /api/sessions/:id`
    /// answered right after (no write reaches the session in between).
    Derived {
        session: String,
        events: Vec<serde_json::Value>,
        read: serde_json::Value,
    },
    /// After every fault healed: did instance i's `/health` report its Pub/Sub bridge
    /// subscribed (`redis.pubsub`) within a few seconds?
    Bridge { instance: usize, subscribed: bool },
    /// After every fault healed: did instance i accept a write in time?
    Live { instance: usize, ok: bool },
    /// Liveness mode, after the fault that never heals began: what instance i answered
    /// (`status` 0: nothing within the bound) to `what`, in probe round `round`.
    Forever {
        instance: usize,
        round: usize,
        what: &'static str,
        status: u16,
    },
    /// A read of a whole session around its TTL, after the clock jumped (see [`TtlPhase`]).
    TtlRead {
        session: String,
        phase: TtlPhase,
        session_status: u16,
        events: u64,
        chains_status: u16,
        /// How many chains `GET /api/sessions/:id/chains` listed.
        chains: usize,
        /// The session read answered 200 from the archive (`archived: true`).
        archived: bool,
    },
    /// The probe of the queues' TTL: an input item read just before the queue TTL, and the
    /// queues and session just after it.
    QueueTtl {
        before_ttl_available: bool,
        after_ttl_available: bool,
        after_ttl_commands: usize,
        session_status: u16,
    },
}

/// When a [`Record::TtlRead`] was taken, and so what it must show.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TtlPhase {
    /// Just under 24 h after the session's last activity: whole, as the final read saw it.
    BeforeTtl,
    /// Past 24 h after the last activity of a session written to at `BeforeTtl`: whole,
    /// with that one more event (its whole TTL was refreshed, events included).
    Refreshed,
    /// Past 24 h after the last activity: gone entirely from live storage (session,
    /// events, chains); the session read answers from the archive.
    AfterTtl,
}

/// Everything recorded during one run, in the order it happened.
#[derive(Debug, Default)]
pub struct History {
    pub records: Vec<(u64, Record)>,
}

pub(crate) type Shared = Rc<RefCell<History>>;

pub(crate) fn now_ms() -> u64 {
    turmoil::sim_elapsed()
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn record(history: &Shared, r: Record) {
    history.borrow_mut().records.push((now_ms(), r));
}
