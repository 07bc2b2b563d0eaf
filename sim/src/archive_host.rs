//! The simulated archive: one in-memory [`Archive`] every instance files into (as they share
//! one PostgreSQL in production), kept outside the instances so it outlives their crashes,
//! with the archive's own faults:
//!
//! * **down** (a crash): every call fails `Unavailable`; an answer still on its way when it
//!   goes down is lost, while its write stays (committed, the reply never sent);
//! * **slow**: every call answers that much later (on simulated time), its write made when
//!   it arrived.
//!
//! It keeps what the PostgreSQL adapter promises, one row per (session id, epoch) replaced
//! only by a newer `savedAt`, for the invariants to judge.
//! Nothing here judges a run or decides when a fault happens.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use afw::archive::{
    Archive, ArchiveError, ArchiveFuture, Cleaned, Date, Listing, Page, Put, Snapshot, Stats,
};
use afw::domain::model::{SessionId, Timestamp};
use bytes::Bytes;

/// One filed incarnation.
#[derive(Debug, Clone)]
pub struct Row {
    pub date: Date,
    pub saved_at: Timestamp,
    pub body: Bytes,
}

#[derive(Debug, Default)]
struct State {
    down: bool,
    /// Counts the crashes: a call begun before the latest one lost its answer.
    crashes: u64,
    delay: Duration,
    /// By (session id, epoch).
    rows: BTreeMap<(String, String), Row>,
}

/// The archive host; clones share it.
#[derive(Debug, Clone, Default)]
pub struct ArchiveHost(Arc<Mutex<State>>);

impl ArchiveHost {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The archive goes down: calls fail until [`ArchiveHost::restart`], answers in flight
    /// are lost.
    pub fn crash(&self) {
        let mut s = self.state();
        s.down = true;
        s.crashes += 1;
    }

    /// Back up, with everything it held.
    pub fn restart(&self) {
        self.state().down = false;
    }

    /// Every call answers `delay` late (zero: at once).
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// What it holds at the end, by (session id, epoch).
    pub fn rows(&self) -> BTreeMap<(String, String), Row> {
        self.state().rows.clone()
    }

    /// Runs `op` on the state as the call arrives, then answers after the delay, unless the
    /// archive was down then or went down meanwhile.
    async fn call<T>(&self, op: impl FnOnce(&mut State) -> T) -> Result<T, ArchiveError> {
        let (out, crashes, delay) = {
            let mut s = self.state();
            if s.down {
                return Err(ArchiveError::Unavailable("the archive host is down".into()));
            }
            (op(&mut s), s.crashes, s.delay)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let s = self.state();
        if s.down || s.crashes != crashes {
            return Err(ArchiveError::Unavailable(
                "the archive host went down before it answered".into(),
            ));
        }
        Ok(out)
    }
}

impl State {
    fn put(&mut self, snap: &Snapshot) -> Put {
        let key = (snap.session_id.as_str().to_owned(), snap.epoch.clone());
        let outcome = match self.rows.get(&key) {
            Some(held) if held.saved_at >= snap.saved_at => Put::Stale,
            Some(_) => Put::Updated,
            None => Put::Created,
        };
        if outcome != Put::Stale {
            let row = Row {
                date: snap.date,
                saved_at: snap.saved_at,
                body: snap.body.clone(),
            };
            self.rows.insert(key, row);
        }
        outcome
    }

    fn dates(&self) -> Vec<Date> {
        let dates: BTreeSet<Date> = self.rows.values().map(|r| r.date).collect();
        dates.into_iter().rev().collect()
    }

    fn sessions(&self, date: Date) -> Vec<SessionId> {
        let ids: BTreeSet<&str> = self
            .rows
            .iter()
            .filter(|(_, r)| r.date == date)
            .map(|((id, _), _)| id.as_str())
            .collect();
        ids.into_iter()
            .filter_map(|id| SessionId::parse(id).ok())
            .collect()
    }

    fn newest(&self, id: &SessionId, date: Option<Date>) -> Option<Bytes> {
        self.rows
            .iter()
            .filter(|((sid, _), r)| sid == id.as_str() && date.is_none_or(|d| d == r.date))
            .max_by_key(|(_, r)| r.saved_at)
            .map(|(_, r)| r.body.clone())
    }

    fn stats(&self) -> Stats {
        let dates = self.dates();
        let sessions: BTreeSet<(&str, Date)> = self
            .rows
            .iter()
            .map(|((id, _), r)| (id.as_str(), r.date))
            .collect();
        Stats {
            dates: dates.len(),
            sessions: sessions.len(),
            oldest: dates.last().copied(),
            newest: dates.first().copied(),
        }
    }

    fn cleanup(&mut self, before: Date) -> Cleaned {
        let dates: BTreeSet<Date> = self
            .rows
            .values()
            .map(|r| r.date)
            .filter(|d| *d < before)
            .collect();
        let count = self.rows.len();
        self.rows.retain(|_, r| r.date >= before);
        Cleaned {
            dates: dates.len(),
            sessions: count - self.rows.len(),
        }
    }
}

fn page<T>(all: Vec<T>, p: Page) -> Listing<T> {
    let total = all.len();
    let items = all.into_iter().skip(p.offset).take(p.limit).collect();
    Listing { items, total }
}

impl Archive for ArchiveHost {
    fn kind(&self) -> &'static str {
        "sim"
    }

    fn ping(&self) -> ArchiveFuture<'_, ()> {
        Box::pin(self.call(|_| ()))
    }

    fn put<'a>(&'a self, snapshot: &'a Snapshot) -> ArchiveFuture<'a, Put> {
        Box::pin(self.call(move |s| s.put(snapshot)))
    }

    fn dates(&self, p: Page) -> ArchiveFuture<'_, Listing<Date>> {
        Box::pin(self.call(move |s| page(s.dates(), p)))
    }

    fn sessions(&self, date: Date, p: Page) -> ArchiveFuture<'_, Listing<SessionId>> {
        Box::pin(self.call(move |s| page(s.sessions(date), p)))
    }

    fn get<'a>(
        &'a self,
        id: &'a SessionId,
        date: Option<Date>,
    ) -> ArchiveFuture<'a, Option<Bytes>> {
        Box::pin(self.call(move |s| s.newest(id, date)))
    }

    fn stats(&self) -> ArchiveFuture<'_, Stats> {
        Box::pin(self.call(|s| s.stats()))
    }

    fn cleanup(&self, before: Date) -> ArchiveFuture<'_, Cleaned> {
        Box::pin(self.call(move |s| s.cleanup(before)))
    }
}
