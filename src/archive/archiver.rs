//! Archiving sessions: building a snapshot from the live store and filing it, off the
//! request path.
//!
//! Handlers [`Archiver::request`] a session (it ended, or changed after ending): it is
//! marked due in the store (shared by every instance in Redis mode) and queued here. One
//! task per instance takes the queue: it takes the session's lease in the store (so one
//! instance at a time writes a session's snapshot; a lease another instance holds leaves
//! the session to it), reads the session, its chains and every event, puts the snapshot,
//! and clears the mark unless the session was marked again meanwhile. A store or archive
//! that is down keeps the session queued and retried with backoff (counted, and reported
//! in `/health`); requests never wait for it and an event write never fails because of it.
//! The queue is bounded: past it, a request is dropped and counted.
//!
//! One sweeper at a time (a lease in the store) requests what no request covers: sessions
//! near their TTL, and sessions still marked due a lease term after their mark (their
//! instance crashed or lost the race), and applies retention. This module must not serve
//! HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::{Archive, ArchiveError, Date, Put, Snapshot};
use crate::domain::model::{Chain, Session, SessionId, Timestamp};
use crate::metrics::Metrics;
use crate::ports::Clock;
use crate::storage::{EventQuery, Store, StoreError};
use crate::sync::lock;

/// Sessions waiting to be archived, at most.
pub(crate) const MAX_PENDING: usize = 10_000;
/// Events read from the store per call while building a snapshot.
const EVENT_PAGE: usize = 1_000;
/// How long a session's lease lets one instance archive it alone: longer than reading a
/// session (10 000 events) and one put (3 s at most) take.
pub(crate) const ARCHIVE_LEASE: Duration = Duration::from_secs(30);
/// The sweeper's lease runs this many sweep intervals: the sweeping instance renews it at
/// each sweep, and another takes over once it has missed two.
const SWEEP_LEASE_INTERVALS: u32 = 3;
/// The name of the sweeper's lease.
const SWEEP_LEASE: &str = "archive-sweep";
/// Sessions remembered as archived at their last activity, at most.
const MAX_REMEMBERED: usize = 100_000;
/// Sessions listed per store call while sweeping.
const SWEEP_PAGE: usize = 200;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// What `/health` reports about archival.
#[derive(Debug, Default)]
pub struct ArchiveStatus {
    failures_in_a_row: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

impl ArchiveStatus {
    /// The last failure, while archival is failing.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    pub fn failing(&self) -> bool {
        self.failures_in_a_row.load(Ordering::Relaxed) > 0
    }
}

/// The handle handlers hold.
pub struct Archiver {
    archive: Arc<dyn Archive>,
    queue: std::sync::Mutex<BTreeSet<SessionId>>,
    wake: Notify,
    status: ArchiveStatus,
    metrics: Arc<Metrics>,
    /// The last activity each recently archived session was archived at: the sweeper
    /// skips a session whose snapshot is current.
    archived: std::sync::Mutex<BTreeMap<SessionId, Timestamp>>,
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("cannot encode the snapshot: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What became of one queued session.
enum Outcome {
    /// Put (or gone from the store: nothing left to file).
    Filed,
    /// Another instance holds its lease: that one files it.
    Elsewhere,
}

impl Archiver {
    pub(crate) fn new(archive: Arc<dyn Archive>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            archive,
            queue: std::sync::Mutex::new(BTreeSet::new()),
            wake: Notify::new(),
            status: ArchiveStatus::default(),
            metrics,
            archived: std::sync::Mutex::new(BTreeMap::new()),
        })
    }

    pub fn archive(&self) -> &Arc<dyn Archive> {
        &self.archive
    }

    pub fn status(&self) -> &ArchiveStatus {
        &self.status
    }

    /// Sessions waiting to be archived (the `afw_archive_pending` gauge).
    pub fn pending(&self) -> usize {
        usize::try_from(self.metrics.archive.pending.get()).unwrap_or(0)
    }

    /// Asks for `session` to be archived (again): marks it due in the store, so that
    /// another instance files it if this one goes down first, and queues it here. A store
    /// that cannot mark it (down, or the due set full) leaves it queued here only; the
    /// sweeper files every session before its TTL in any case.
    pub(crate) async fn request(&self, store: &dyn Store, session: &SessionId) {
        match store.archive_mark(session).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(session = %session, "archive due set full; archived from this instance only")
            }
            Err(e) => {
                tracing::debug!(session = %session, error = %e, "cannot mark the session due for archival")
            }
        }
        self.queue(session);
    }

    /// Whether `session` was archived from here at some activity (a later change of it
    /// is archived again at once).
    pub(crate) fn was_archived(&self, session: &SessionId) -> bool {
        lock(&self.archived).contains_key(session)
    }

    /// Queues `session` here (its due mark is the caller's).
    fn queue(&self, session: &SessionId) {
        let mut queue = lock(&self.queue);
        if queue.len() >= MAX_PENDING && !queue.contains(session) {
            self.metrics.archive.dropped.inc();
            return;
        }
        queue.insert(session.clone());
        self.set_pending(queue.len());
        drop(queue);
        self.wake.notify_one();
    }

    /// The archiving task: runs until `shutdown` turns true.
    pub(crate) async fn run(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // At start: PostgreSQL applies its migrations now, and a bad archive shows at once.
        if let Err(e) = self.archive.ping().await {
            tracing::warn!(error = %e, "archive unavailable at start; archival will retry");
        }
        let mut backoff = FIRST_RETRY;
        loop {
            let next = lock(&self.queue).first().cloned();
            let Some(session) = next else {
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => return,
                    () = self.wake.notified() => continue,
                }
            };
            match self
                .archive_one(store.as_ref(), clock.as_ref(), &session)
                .await
            {
                Ok(outcome) => {
                    if let Outcome::Elsewhere = outcome {
                        self.metrics.archive.elsewhere.inc();
                    }
                    self.done(&session);
                    backoff = FIRST_RETRY;
                }
                Err(why) => {
                    self.failed(&why);
                    tokio::select! {
                        biased;
                        _ = shutdown.changed() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_RETRY);
                }
            }
        }
    }

    fn remember(&self, id: &SessionId, last_activity: Timestamp) {
        let mut archived = lock(&self.archived);
        if archived.len() >= MAX_REMEMBERED && !archived.contains_key(id) {
            // Forget the session archived longest ago (at the oldest activity).
            let oldest = archived
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                archived.remove(&oldest);
            }
        }
        archived.insert(id.clone(), last_activity);
    }

    /// The sweeper: every `plan.every`, unless another instance holds the sweeper's
    /// lease, requests the archival of every session idle for longer than `ttl - lead`
    /// whose current state is not archived from here (so a session is filed before it
    /// expires, and filed again if it changed since) and of every session still due a
    /// lease term after its mark, and removes the dates past the retention (0: none).
    pub(crate) async fn sweep(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        plan: SweepPlan,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(plan.every) => {}
            }
            let term = millis(plan.every * SWEEP_LEASE_INTERVALS);
            match store.take_lease(SWEEP_LEASE, term).await {
                Ok(None) => {}
                Ok(Some(_)) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "archive sweep: store unavailable");
                    continue;
                }
            }
            let now = clock.now_ms();
            if let Err(e) = self.sweep_once(store.as_ref(), &plan, now).await {
                tracing::debug!(error = %e, "archive sweep: store unavailable");
            }
            if plan.retention_days > 0 {
                self.apply_retention(Date::of(Timestamp(now)), plan.retention_days)
                    .await;
            }
        }
    }

    /// Removes the dates before the last `days` (today included).
    async fn apply_retention(&self, today: Date, days: u32) {
        match self.archive.cleanup(today.minus_days(days - 1)).await {
            Ok(c) if c.dates > 0 => {
                tracing::info!(
                    dates = c.dates,
                    sessions = c.sessions,
                    "archive retention applied"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "archive retention: archive unavailable"),
        }
    }

    /// One sweep at `now`: sessions near their TTL, then sessions left due.
    async fn sweep_once(
        &self,
        store: &dyn Store,
        plan: &SweepPlan,
        now: u64,
    ) -> Result<(), StoreError> {
        // A quarter of the TTL, at most 15 minutes: several sweeps before it expires.
        let lead = (plan.ttl_ms / 4).min(15 * 60 * 1000);
        let cutoff = Timestamp(now.saturating_sub(plan.ttl_ms.saturating_sub(lead)));
        self.near_ttl(store, cutoff).await?;
        let stale = Timestamp(now.saturating_sub(millis(ARCHIVE_LEASE)));
        for id in store.archive_due(stale, MAX_PENDING).await? {
            self.queue(&id);
        }
        Ok(())
    }

    /// Requests every session idle since before `cutoff` whose state is not archived.
    async fn near_ttl(&self, store: &dyn Store, cutoff: Timestamp) -> Result<(), StoreError> {
        let mut cursor = Some(crate::domain::session::Cursor {
            last_activity: Timestamp(cutoff.0.saturating_add(1)),
            id: SessionId::parse("0").map_err(|_| StoreError::Corrupt("cursor id".into()))?,
        });
        loop {
            let page = store
                .list_sessions(crate::domain::session::SessionFilter {
                    limit: SWEEP_PAGE,
                    cursor,
                    ..Default::default()
                })
                .await?;
            for session in &page.sessions {
                let current =
                    lock(&self.archived).get(&session.id) == Some(&session.last_activity_at);
                if !current && session.last_activity_at <= cutoff {
                    self.request(store, &session.id).await;
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(()),
            }
        }
    }

    fn set_pending(&self, n: usize) {
        self.metrics
            .archive
            .pending
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    fn done(&self, session: &SessionId) {
        let mut queue = lock(&self.queue);
        queue.remove(session);
        self.set_pending(queue.len());
        drop(queue);
        self.status.failures_in_a_row.store(0, Ordering::Relaxed);
        *lock(&self.status.last_error) = None;
    }

    fn failed(&self, why: &Failure) {
        self.metrics.archive.failures.inc();
        let n = self
            .status
            .failures_in_a_row
            .fetch_add(1, Ordering::Relaxed);
        let text = why.to_string();
        if n == 0 {
            tracing::warn!(error = %text, "archiving failed; retrying with backoff");
        }
        *lock(&self.status.last_error) = Some(text);
    }

    async fn archive_one(
        &self,
        store: &dyn Store,
        clock: &dyn Clock,
        id: &SessionId,
    ) -> Result<Outcome, Failure> {
        let lease = crate::storage::archive_lease(id);
        if store
            .take_lease(&lease, millis(ARCHIVE_LEASE))
            .await?
            .is_some()
        {
            return Ok(Outcome::Elsewhere);
        }
        let read_at = Timestamp(clock.now_ms());
        let Some(built) = snapshot(store, id, read_at).await? else {
            // Deleted or expired before its turn: nothing left to file.
            store.archive_filed(id, read_at).await?;
            return Ok(Outcome::Filed);
        };
        let snapshot = built.snapshot;
        let put = self.archive.put(&snapshot).await?;
        store.archive_filed(id, read_at).await?;
        self.remember(id, built.last_activity);
        let outcome = match put {
            Put::Created => "created",
            Put::Updated => "updated",
            Put::Stale => "stale",
        };
        self.metrics.archive.count(outcome, snapshot.body.len());
        Ok(Outcome::Filed)
    }
}

/// When and what the sweeper sweeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SweepPlan {
    pub every: Duration,
    pub ttl_ms: u64,
    pub retention_days: u32,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The session's snapshot as of now, `None` when it is gone.
async fn snapshot(
    store: &dyn Store,
    id: &SessionId,
    now: Timestamp,
) -> Result<Option<Built>, Failure> {
    let Some(session) = store.get_session(id).await? else {
        return Ok(None);
    };
    let chains = store.chains(id).await?;
    let mut events = Vec::new();
    let mut after = None;
    let epoch = loop {
        let page = store
            .read_events(
                id,
                EventQuery {
                    after,
                    limit: EVENT_PAGE,
                    ..EventQuery::default()
                },
            )
            .await?;
        let last = page.events.last().map(|e| e.seq);
        let full = page.events.len() == EVENT_PAGE;
        events.extend(page.events.into_iter().map(|e| e.json));
        match (full, last) {
            (true, Some(seq)) => after = Some(seq),
            _ => break page.epoch.unwrap_or_else(|| session.epoch.clone()),
        }
    };
    let body = document(&session, &events, &chains, &epoch, now)?;
    Ok(Some(Built {
        last_activity: session.last_activity_at,
        snapshot: Snapshot {
            session_id: id.clone(),
            epoch,
            date: Date::of(session.started_at),
            saved_at: now,
            body: body.into(),
        },
    }))
}

/// `{session, events, chains, epoch, savedAt}`: the stored events go in as the bytes the
/// store serves (JSON afw wrote), not parsed and written again.
fn document(
    session: &Session,
    events: &[bytes::Bytes],
    chains: &[Chain],
    epoch: &str,
    saved_at: Timestamp,
) -> Result<Vec<u8>, serde_json::Error> {
    let size = events.iter().map(|e| e.len() + 1).sum::<usize>() + 4096;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"{\"session\":");
    serde_json::to_writer(&mut out, session)?;
    out.extend_from_slice(b",\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(event);
    }
    out.extend_from_slice(b"],\"chains\":");
    serde_json::to_writer(&mut out, chains)?;
    out.extend_from_slice(b",\"epoch\":");
    serde_json::to_writer(&mut out, epoch)?;
    out.extend_from_slice(b",\"savedAt\":");
    serde_json::to_writer(&mut out, &saved_at)?;
    out.push(b'}');
    Ok(out)
}

/// A snapshot, and the session's last activity it holds.
struct Built {
    snapshot: Snapshot,
    last_activity: Timestamp,
}
