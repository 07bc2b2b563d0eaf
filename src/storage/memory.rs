//! `MemoryStore`: the default backend, with Redis's semantics in one process.
//!
//! Layout: a map of session slots, each behind its own mutex, so writes to different
//! sessions contend only for the moment a write moves its session in the listing indexes
//! (by activity, status and user: [`super::listing`], a few ordered-set operations under one
//! short lock); two small indexes (chain id → session, command id → session) locked only
//! when a chain or command is created or removed. Everything of a session —
//! its events, chains and queues — lives in its slot, which makes every operation atomic
//! by holding one lock, and lets event publication happen inside that lock, in `seq` order.
//!
//! TTLs run on the injected clock. Reads treat an expired slot as absent at once (like
//! Redis); one purge task frees memory, sleeping until the earliest deadline of a
//! deadline-ordered set rather than scanning everything. Set entries may be stale (earlier
//! than the slot's real deadline after activity refreshed it); the purge re-checks and
//! re-files them, so activity never touches the global set.
//!
//! Bounds: each session keeps at most `max_events_per_session` events and
//! `session_budget_bytes` of them (the oldest go first); at `max_sessions` sessions, or past
//! `memory_budget_bytes` of events in all, the least recently active sessions are evicted
//! (their subscribers get `session:deleted` with `reason: "evicted"`), because refusing
//! writes would stop new agents while idle sessions wait for their TTL.
//!
//! Lock order: sessions map → slot → indexes → expiry set. Never the reverse.

use crate::sync::{lock, read, write};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::Notify;

use super::listing::{Entry, Listing};
use super::{
    Appended, Cursor, EventPage, EventQuery, MAX_INPUT_KEYS, Pushed, SessionFilter, SessionPage,
    SessionUpdate, Store, StoreError, StoreFuture, StoreHealth, StoreLimits, UserCursor,
    UserSessions, UsersPage,
};
use crate::bus::Bus;
use crate::domain::derive;
use crate::domain::model::{
    Chain, Command, CommandStatus, InputItem, LastPrompt, NewEvent, Notice, Session, SessionId,
    StoredEvent, Timestamp,
};
use crate::domain::session;
use crate::ports::{Clock, IdGen};

type SlotRef = Arc<Mutex<Slot>>;

#[derive(Debug)]
struct Slot {
    session: Session,
    chains: Vec<Chain>,
    events: VecDeque<StoredEvent>,
    /// Bytes of `events` (their JSON).
    bytes: usize,
    next_seq: u64,
    /// The `eventId`s of the stored events and their `seq`s (both ways, so trimming an
    /// event forgets its id): a retried write is recognised for as long as its event is
    /// kept.
    event_ids: BTreeMap<String, u64>,
    ids_by_seq: BTreeMap<u64, String>,
    /// When the session, its events and chains expire (ms on the injected clock).
    expires_at: u64,
    /// When the command and input queues expire.
    queues_expire_at: u64,
    /// Every command of the session in issue order; pending ones form the queue.
    commands: Vec<Command>,
    input: VecDeque<InputItem>,
    /// The client keys of input queued within the queue TTL, oldest first (at most
    /// [`MAX_INPUT_KEYS`]): a retried `POST .../input` is recognised.
    input_keys: VecDeque<String>,
    /// Set when the slot is removed from the map; a writer that raced with the removal
    /// looks the session up again instead of writing into a detached slot.
    dead: bool,
}

impl Slot {
    fn new(session: Session, now: u64, limits: &StoreLimits) -> Self {
        Self {
            session,
            chains: Vec::new(),
            events: VecDeque::new(),
            bytes: 0,
            next_seq: 1,
            event_ids: BTreeMap::new(),
            ids_by_seq: BTreeMap::new(),
            expires_at: now + limits.session_ttl_ms,
            queues_expire_at: now + limits.queue_ttl_ms,
            commands: Vec::new(),
            input: VecDeque::new(),
            input_keys: VecDeque::new(),
            dead: false,
        }
    }

    fn expired(&self, now: u64) -> bool {
        self.expires_at <= now
    }

    /// Activity refreshes every TTL together, so a session never half-expires.
    fn touch(&mut self, now: u64, limits: &StoreLimits) {
        self.expires_at = now + limits.session_ttl_ms;
        self.queues_expire_at = now + limits.queue_ttl_ms;
    }

    /// Drops the queues if their TTL passed (lazily, on access).
    fn expire_queues(&mut self, now: u64) -> Vec<String> {
        if self.queues_expire_at > now {
            return Vec::new();
        }
        self.input.clear();
        self.input_keys.clear();
        let gone = self.commands.iter().map(|c| c.id.clone()).collect();
        self.commands.clear();
        gone
    }

    fn has_queued(&self) -> bool {
        !self.input.is_empty() || !self.commands.is_empty()
    }

    /// The earliest instant at which the purge task has something to do for this slot.
    fn deadline(&self) -> u64 {
        if self.has_queued() {
            self.queues_expire_at.min(self.expires_at)
        } else {
            self.expires_at
        }
    }
}

#[derive(Debug)]
struct Inner {
    clock: Arc<dyn Clock>,
    ids: Arc<IdGen>,
    limits: StoreLimits,
    bus: Arc<Bus>,
    sessions: RwLock<BTreeMap<SessionId, SlotRef>>,
    chain_index: RwLock<BTreeMap<String, SessionId>>,
    command_index: RwLock<BTreeMap<String, SessionId>>,
    expiry: Mutex<BTreeSet<(u64, SessionId)>>,
    expiry_changed: Arc<Notify>,
    /// Bytes of events across all slots (bounded by `limits.memory_budget_bytes`).
    event_bytes: AtomicUsize,
    /// The listing indexes, kept in step with every slot's session.
    listing: Mutex<Listing>,
    /// Sessions due for archival, with when they were marked.
    archive_due: Mutex<BTreeMap<SessionId, u64>>,
}

/// The in-memory backend. Cheap to clone; clones share the data.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

fn ready<'a, T: Send + 'a>(r: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(r))
}

impl MemoryStore {
    /// Creates the store and spawns its purge task on the current tokio runtime.
    /// `ids` draws each new session's epoch.
    pub fn new(clock: Arc<dyn Clock>, limits: StoreLimits, bus: Arc<Bus>, ids: Arc<IdGen>) -> Self {
        let inner = Arc::new(Inner {
            clock,
            ids,
            limits,
            bus,
            sessions: RwLock::new(BTreeMap::new()),
            chain_index: RwLock::new(BTreeMap::new()),
            command_index: RwLock::new(BTreeMap::new()),
            expiry: Mutex::new(BTreeSet::new()),
            expiry_changed: Arc::new(Notify::new()),
            event_bytes: AtomicUsize::new(0),
            listing: Mutex::new(Listing::default()),
            archive_due: Mutex::new(BTreeMap::new()),
        });
        tokio::spawn(purge_loop(
            Arc::downgrade(&inner),
            Arc::clone(&inner.expiry_changed),
        ));
        Self { inner }
    }

    /// Number of live slots (sessions), for tests and metrics.
    pub fn session_count(&self) -> usize {
        self.inner.read_map().len()
    }
}

impl Inner {
    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<SessionId, SlotRef>> {
        read(&self.sessions)
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<SessionId, SlotRef>> {
        write(&self.sessions)
    }

    fn schedule(&self, deadline: u64, id: &SessionId) {
        let mut set = lock(&self.expiry);
        let earliest = set.first().map(|(d, _)| *d);
        set.insert((deadline, id.clone()));
        if earliest.is_none_or(|e| deadline < e) {
            self.expiry_changed.notify_one();
        }
    }

    /// Runs `f` on the live slot of `id`, or returns `None` if there is none.
    ///
    /// The slot is locked while the map's read guard is held (map → slot is the lock
    /// order), so a removal cannot interleave and no `Arc` is cloned on the hot path.
    fn with_slot<T>(&self, id: &SessionId, f: impl FnOnce(&mut Slot, u64) -> T) -> Option<T> {
        let map = self.read_map();
        let mut guard = lock(map.get(id)?);
        let now = self.now();
        if guard.dead || guard.expired(now) {
            return None;
        }
        for gone in guard.expire_queues(now) {
            self.unindex_command(&gone);
        }
        Some(self.listed(&mut guard, |slot| f(slot, now)))
    }

    /// Runs `f` on a locked live slot and moves the session in the listing indexes if its
    /// activity, status or user changed.
    fn listed<T>(&self, slot: &mut Slot, f: impl FnOnce(&mut Slot) -> T) -> T {
        let before = Entry::of(&slot.session);
        let out = f(slot);
        let after = Entry::of(&slot.session);
        if before != after {
            lock(&self.listing).update(Some(&before), Some(&after));
        }
        out
    }

    /// Runs `f` on the session's slot, creating it with `create` if it does not exist
    /// (or only exists expired).
    fn with_slot_or_create<T>(
        &self,
        id: &SessionId,
        mut create: impl FnMut(u64) -> Session,
        f: impl FnOnce(&mut Slot, u64) -> T,
    ) -> T {
        {
            // Fast path: the session exists and is live.
            let map = self.read_map();
            if let Some(slot) = map.get(id) {
                let mut guard = lock(slot);
                let now = self.now();
                if !guard.dead && !guard.expired(now) {
                    for gone in guard.expire_queues(now) {
                        self.unindex_command(&gone);
                    }
                    return self.listed(&mut guard, |slot| f(slot, now));
                }
            }
        }
        // Slow path: create it, replacing an expired slot, under the map's write lock.
        let mut map = self.write_map();
        let now = self.now();
        let live = map.get(id).filter(|slot| {
            let mut guard = lock(slot);
            let usable = !guard.dead && !guard.expired(now);
            if !usable {
                guard.dead = true;
            }
            usable
        });
        let slot = match live {
            Some(slot) => Arc::clone(slot),
            None => {
                if let Some(old) = map.remove(id) {
                    self.unindex_slot(&lock(&old));
                }
                if map.len() >= self.limits.max_sessions {
                    // Evict a few at once, so sessions created at the cap cost one scan
                    // per hundredth of the cap, not one each.
                    let batch = (self.limits.max_sessions / 100).max(1);
                    self.evict_least_active(&mut map, id, |evicted, _| evicted < batch);
                }
                let mut session = create(now);
                session.epoch = self.ids.suffix();
                lock(&self.listing).update(None, Some(&Entry::of(&session)));
                let slot = Arc::new(Mutex::new(Slot::new(session, now, &self.limits)));
                map.insert(id.clone(), Arc::clone(&slot));
                self.schedule(now + self.limits.session_ttl_ms, id);
                slot
            }
        };
        let mut guard = lock(&slot);
        for gone in guard.expire_queues(now) {
            self.unindex_command(&gone);
        }
        self.listed(&mut guard, |slot| f(slot, now))
    }

    /// Stores one new event in the slot: its `seq`, its effect on the session and chains,
    /// its id, its publication (inside the slot lock, so subscribers see events in `seq`
    /// order), then the trim of the oldest events, by count and by bytes (the newest event
    /// always stays).
    fn append_one(&self, slot: &mut Slot, session: &SessionId, ev: &NewEvent, now: u64) -> u64 {
        let seq = slot.next_seq;
        slot.next_seq += 1;
        let effects = derive::apply_event(&mut slot.session, &mut slot.chains, ev, Timestamp(now));
        if let Some(chain_id) = effects.chain_compiled {
            write(&self.chain_index).insert(chain_id, session.clone());
        }
        if let Some(id) = ev.event_id() {
            slot.event_ids.insert(id.to_owned(), seq);
            slot.ids_by_seq.insert(seq, id.to_owned());
        }
        let stored = StoredEvent {
            seq,
            kind: ev.kind,
            timestamp: ev.timestamp,
            json: ev.json_with_seq(seq),
        };
        self.bus
            .publish_event(session, &stored, &slot.session.epoch, || {
                serde_json::to_string(&slot.session).ok()
            });
        slot.bytes += stored.json.len();
        self.event_bytes
            .fetch_add(stored.json.len(), Ordering::Relaxed);
        slot.events.push_back(stored);
        while slot.events.len() > self.limits.max_events_per_session
            || (slot.bytes > self.limits.session_budget_bytes && slot.events.len() > 1)
        {
            let Some(old) = slot.events.pop_front() else {
                break;
            };
            slot.bytes -= old.json.len();
            self.event_bytes
                .fetch_sub(old.json.len(), Ordering::Relaxed);
            if let Some(id) = slot.ids_by_seq.remove(&old.seq) {
                slot.event_ids.remove(&id);
            }
        }
        seq
    }

    /// Removes the slot of `id` if `pred` holds for it; returns whether it did. With
    /// `announce`, its subscribers get `session:deleted` (a delete; an expiry is silent, as
    /// in Redis).
    fn remove_if(
        &self,
        id: &SessionId,
        announce: bool,
        pred: impl FnOnce(&Slot, u64) -> bool,
    ) -> bool {
        let mut map = self.write_map();
        let Some(slot) = map.get(id).cloned() else {
            return false;
        };
        let mut guard = lock(&slot);
        if !pred(&guard, self.now()) {
            return false;
        }
        guard.dead = true;
        map.remove(id);
        drop(map);
        self.unindex_slot(&guard);
        if announce {
            // Told while the slot is still locked: no write to the session can slip in
            // between its removal and the notice.
            let now = Timestamp(self.now());
            self.bus
                .publish_notice(id, Notice::SessionDeleted, &Map::new(), now);
        }
        true
    }

    /// Removes the least recently active live sessions (never `keep`) while `more(evicted
    /// so far, event bytes left)` says so. Their subscribers are told the session is gone.
    fn evict_least_active(
        &self,
        map: &mut BTreeMap<SessionId, SlotRef>,
        keep: &SessionId,
        mut more: impl FnMut(usize, usize) -> bool,
    ) {
        let mut by_activity: Vec<(u64, SessionId)> = map
            .iter()
            .filter(|(id, _)| *id != keep)
            .map(|(id, slot)| (lock(slot).session.last_activity_at.0, id.clone()))
            .collect();
        by_activity.sort_unstable();
        let mut evicted = 0;
        for (_, id) in by_activity {
            if !more(evicted, self.event_bytes.load(Ordering::Relaxed)) {
                break;
            }
            let Some(slot) = map.remove(&id) else {
                continue;
            };
            let mut guard = lock(&slot);
            guard.dead = true;
            self.unindex_slot(&guard);
            drop(guard);
            evicted += 1;
            tracing::info!(session = %id, "session evicted from memory storage (AFW_MAX_SESSIONS or AFW_MEMORY_BUDGET_BYTES)");
            let mut fields = Map::new();
            fields.insert("reason".into(), Value::from("evicted"));
            self.bus
                .publish_notice(&id, Notice::SessionDeleted, &fields, Timestamp(self.now()));
        }
    }

    /// Evicts least recently active sessions until the event bytes fit the budget again
    /// (with 5 % room, so the next writes do not each trigger a scan).
    fn enforce_memory_budget(&self, keep: &SessionId) {
        let budget = self.limits.memory_budget_bytes;
        if self.event_bytes.load(Ordering::Relaxed) <= budget {
            return;
        }
        let target = budget - budget / 20;
        let mut map = self.write_map();
        self.evict_least_active(&mut map, keep, |_, bytes| bytes > target);
    }

    /// Drops the index entries and the byte count of a removed slot.
    fn unindex_slot(&self, slot: &Slot) {
        self.event_bytes.fetch_sub(slot.bytes, Ordering::Relaxed);
        lock(&self.listing).update(Some(&Entry::of(&slot.session)), None);
        {
            let mut chains = write(&self.chain_index);
            for chain in &slot.chains {
                chains.remove(&chain.id);
            }
        }
        for cmd in &slot.commands {
            self.unindex_command(&cmd.id);
        }
    }

    fn unindex_command(&self, id: &str) {
        let mut idx = write(&self.command_index);
        idx.remove(id);
    }

    fn command_session(&self, command_id: &str) -> Option<SessionId> {
        let idx = read(&self.command_index);
        idx.get(command_id).cloned()
    }

    /// One purge pass: handles every entry whose deadline has passed.
    fn purge_due(&self, now: u64) {
        loop {
            let due = {
                let mut set = lock(&self.expiry);
                match set.first() {
                    Some((d, _)) if *d <= now => set.pop_first(),
                    _ => None,
                }
            };
            let Some((_, id)) = due else { return };
            if self.remove_if(&id, false, |s, now| s.expired(now)) {
                tracing::debug!(session = %id, "session expired");
                continue;
            }
            let Some(slot) = self.read_map().get(&id).cloned() else {
                continue;
            };
            let next = {
                let mut guard = lock(&slot);
                if guard.dead {
                    continue;
                }
                let gone = guard.expire_queues(now);
                for cmd in gone {
                    self.unindex_command(&cmd);
                }
                guard.deadline()
            };
            lock(&self.expiry).insert((next, id));
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.expiry_changed.notify_one();
    }
}

/// The purge sleeps on tokio's monotonic clock but deadlines are wall-clock times: it wakes
/// at least this often so that a wall-clock jump (a suspended VM, an NTP step) frees expired
/// sessions within a minute rather than after the whole TTL. Reads never depend on it: they
/// check expiry themselves.
const MAX_PURGE_SLEEP_MS: u64 = 60_000;

async fn purge_loop(inner: Weak<Inner>, changed: Arc<Notify>) {
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let wait = {
            let Some(inner) = inner.upgrade() else { return };
            let now = inner.now();
            inner.purge_due(now);
            lock(&inner.expiry).first().map(|(d, _)| {
                Duration::from_millis(d.saturating_sub(now).clamp(1, MAX_PURGE_SLEEP_MS))
            })
        };
        match wait {
            Some(wait) => {
                tokio::select! {
                    biased;
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            None => notified.await,
        }
    }
}

fn page_of(slot: &Slot, q: EventQuery) -> EventPage {
    let last_seq = slot.next_seq - 1;
    let first_seq = slot.events.front().map(|e| e.seq);
    // Events are in seq order, so `after` is a binary search, not a scan.
    let start = match q.after {
        Some(after) => slot.events.partition_point(|e| e.seq <= after),
        None => 0,
    };
    let matching = slot
        .events
        .range(start..)
        .filter(|e| q.since.is_none_or(|since| e.timestamp >= since));
    let events: Vec<StoredEvent> = if q.newest {
        let mut newest: Vec<StoredEvent> = matching.rev().take(q.limit).cloned().collect();
        newest.reverse();
        newest
    } else {
        matching.take(q.limit).cloned().collect()
    };
    EventPage {
        events,
        last_seq,
        first_seq,
        epoch: Some(slot.session.epoch.clone()).filter(|e| !e.is_empty()),
    }
}

impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        ready(Ok(StoreHealth {
            connected: true,
            writable: true,
            ..StoreHealth::default()
        }))
    }

    fn create_session(&self, session: Session) -> StoreFuture<'_, Session> {
        let inner = &self.inner;
        let id = session.id.clone();
        let mut created = false;
        let result = inner.with_slot_or_create(
            &id,
            |now| {
                created = true;
                let mut s = session.clone();
                s.last_activity_at = Timestamp(now);
                s
            },
            |slot, _| slot.session.clone(),
        );
        if created {
            ready(Ok(result))
        } else {
            ready(Err(StoreError::SessionExists(id)))
        }
    }

    fn get_session<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Session>> {
        ready(Ok(self.inner.with_slot(id, |slot, _| slot.session.clone())))
    }

    fn update_session<'a>(
        &'a self,
        id: &'a SessionId,
        update: SessionUpdate,
    ) -> StoreFuture<'a, Option<Session>> {
        let limits = self.inner.limits;
        let bus = &self.inner.bus;
        let updated = self.inner.with_slot(id, |slot, now| {
            session::apply_update(&mut slot.session, update, Timestamp(now));
            slot.touch(now, &limits);
            let fields = session::updated_fields(&slot.session);
            bus.publish_notice(id, Notice::SessionUpdated, &fields, Timestamp(now));
            slot.session.clone()
        });
        ready(Ok(updated))
    }

    fn delete_session<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool> {
        ready(Ok(self.inner.remove_if(id, true, |s, now| !s.expired(now))))
    }

    fn list_sessions(&self, filter: SessionFilter) -> StoreFuture<'_, SessionPage> {
        // One index, walked from the cursor, a chunk at a time (the index lock is let go
        // before any slot is locked: slots come first in the lock order).
        let inner = &self.inner;
        let want = filter.limit.saturating_add(1);
        let chunk = want.clamp(64, 1000);
        let mut after = filter.cursor.as_ref().map(Cursor::key);
        let mut found: Vec<Session> = Vec::new();
        while found.len() < want {
            let ids = lock(&inner.listing).ids_after(&filter, after.as_ref(), chunk);
            let Some((last, _)) = ids.last() else {
                break;
            };
            after = Some(last.clone());
            let got = ids.len();
            let map = inner.read_map();
            let now = inner.now();
            for (_, id) in ids {
                let Some(slot) = map.get(&id) else { continue };
                let g = lock(slot);
                if !g.dead
                    && !g.expired(now)
                    && filter.status.is_none_or(|st| g.session.status == st)
                {
                    found.push(g.session.clone());
                }
            }
            if got < chunk {
                break;
            }
        }
        let more = found.len() > filter.limit;
        found.truncate(filter.limit);
        let next_cursor = more.then(|| found.last()).flatten().map(|s| Cursor {
            last_activity: s.last_activity_at,
            id: s.id.clone(),
        });
        ready(Ok(SessionPage {
            sessions: found,
            next_cursor,
        }))
    }

    fn list_users(
        &self,
        limit: usize,
        cursor: Option<UserCursor>,
        per_user: usize,
    ) -> StoreFuture<'_, UsersPage> {
        Box::pin(async move {
            let mut after = cursor.as_ref().map(UserCursor::key);
            let mut users = Vec::new();
            let mut next_cursor = None;
            'pages: loop {
                let keys = lock(&self.inner.listing).users_after(after.as_ref(), limit + 1);
                let Some(last) = keys.last() else { break };
                after = Some(last.clone());
                let got = keys.len();
                for (_, name) in keys {
                    let user = name.0;
                    let filter = SessionFilter {
                        user: Some(user.clone()),
                        limit: per_user,
                        ..SessionFilter::default()
                    };
                    let page = self.list_sessions(filter).await?;
                    if page.sessions.is_empty() {
                        continue;
                    }
                    if users.len() == limit {
                        next_cursor = users.last().map(|u: &UserSessions| UserCursor {
                            last_activity: u.sessions[0].last_activity_at,
                            user: u.user.clone(),
                        });
                        break 'pages;
                    }
                    users.push(UserSessions {
                        session_count: lock(&self.inner.listing).user_count(&user),
                        user,
                        sessions: page.sessions,
                    });
                }
                if got < limit + 1 {
                    break;
                }
            }
            Ok(UsersPage { users, next_cursor })
        })
    }

    fn chains<'a>(&'a self, session: &'a SessionId) -> StoreFuture<'a, Vec<Chain>> {
        ready(Ok(self
            .inner
            .with_slot(session, |slot, _| slot.chains.clone())
            .unwrap_or_default()))
    }

    fn session_with_chains<'a>(
        &'a self,
        id: &'a SessionId,
    ) -> StoreFuture<'a, Option<(Session, Vec<Chain>)>> {
        ready(Ok(self.inner.with_slot(id, |slot, _| {
            (slot.session.clone(), slot.chains.clone())
        })))
    }

    fn chain<'a>(&'a self, chain_id: &'a str) -> StoreFuture<'a, Option<Chain>> {
        let session = {
            let idx = read(&self.inner.chain_index);
            idx.get(chain_id).cloned()
        };
        let chain = session.and_then(|sid| {
            self.inner
                .with_slot(&sid, |slot, _| {
                    slot.chains.iter().find(|c| c.id == chain_id).cloned()
                })
                .flatten()
        });
        ready(Ok(chain))
    }

    fn append_events<'a>(
        &'a self,
        session: &'a SessionId,
        events: Vec<NewEvent>,
    ) -> StoreFuture<'a, Vec<Appended>> {
        let Some(first) = events.first() else {
            return ready(Ok(Vec::new()));
        };
        let inner = &self.inner;
        let outcomes = inner.with_slot_or_create(
            session,
            |now| derive::session_for_unknown(first, Timestamp(now)),
            |slot, now| {
                let outcomes = events
                    .iter()
                    .map(
                        |ev| match ev.event_id().and_then(|id| slot.event_ids.get(id)) {
                            Some(&seq) => Appended {
                                seq,
                                duplicate: true,
                                epoch: slot.session.epoch.clone(),
                            },
                            None => Appended {
                                seq: inner.append_one(slot, session, ev, now),
                                duplicate: false,
                                epoch: slot.session.epoch.clone(),
                            },
                        },
                    )
                    .collect();
                slot.touch(now, &inner.limits);
                outcomes
            },
        );
        inner.enforce_memory_budget(session);
        ready(Ok(outcomes))
    }

    fn read_events<'a>(
        &'a self,
        session: &'a SessionId,
        query: EventQuery,
    ) -> StoreFuture<'a, EventPage> {
        ready(Ok(self
            .inner
            .with_slot(session, |slot, _| page_of(slot, query))
            .unwrap_or_default()))
    }

    fn set_awaiting<'a>(
        &'a self,
        session: &'a SessionId,
        prompt: LastPrompt,
        fields: Map<String, Value>,
    ) -> StoreFuture<'a, Session> {
        let limits = self.inner.limits;
        let bus = &self.inner.bus;
        let result = self.inner.with_slot(session, |slot, now| {
            session::apply_awaiting(&mut slot.session, prompt, Timestamp(now));
            slot.touch(now, &limits);
            bus.publish_notice(session, Notice::Awaiting, &fields, Timestamp(now));
            slot.session.clone()
        });
        ready(result.ok_or_else(|| StoreError::SessionNotFound(session.clone())))
    }

    fn push_input<'a>(
        &'a self,
        session: &'a SessionId,
        item: InputItem,
        keyed: bool,
    ) -> StoreFuture<'a, Pushed> {
        let inner = &self.inner;
        let limits = inner.limits;
        let result = inner.with_slot(session, |slot, now| {
            if keyed && slot.input_keys.contains(&item.id) {
                let pushed = Pushed {
                    queue_length: slot.input.len(),
                    duplicate: true,
                };
                return Ok((pushed, slot.deadline()));
            }
            if slot.input.len() >= limits.max_input_queue {
                return Err(StoreError::InputQueueFull {
                    limit: limits.max_input_queue,
                });
            }
            let fields = session::input_queued_fields(&item.id, slot.input.len() + 1);
            if keyed {
                if slot.input_keys.len() >= MAX_INPUT_KEYS {
                    slot.input_keys.pop_front();
                }
                slot.input_keys.push_back(item.id.clone());
            }
            slot.input.push_back(item);
            slot.touch(now, &limits);
            // Under the slot lock, like the write: the notice and the long polls' wake-up
            // cannot be lost apart from it.
            inner
                .bus
                .publish_notice(session, Notice::InputQueued, &fields, Timestamp(now));
            inner.bus.input_queued(session);
            let pushed = Pushed {
                queue_length: slot.input.len(),
                duplicate: false,
            };
            Ok((pushed, slot.deadline()))
        });
        let result = match result {
            None => Err(StoreError::SessionNotFound(session.clone())),
            Some(Err(e)) => Err(e),
            Some(Ok((pushed, deadline))) => {
                inner.schedule(deadline, session);
                Ok(pushed)
            }
        };
        ready(result)
    }

    fn pop_input<'a>(&'a self, session: &'a SessionId) -> StoreFuture<'a, Option<InputItem>> {
        let limits = self.inner.limits;
        let popped = self
            .inner
            .with_slot(session, |slot, now| {
                let item = slot.input.pop_front()?;
                session::apply_input_popped(&mut slot.session, Timestamp(now));
                slot.touch(now, &limits);
                Some(item)
            })
            .flatten();
        ready(Ok(popped))
    }

    fn push_command(&self, command: Command) -> StoreFuture<'_, (Command, bool)> {
        let inner = &self.inner;
        let limits = inner.limits;
        let session = command.session_id.clone();
        let id = command.id.clone();
        if inner
            .command_session(&id)
            .is_some_and(|owner| owner != session)
        {
            return ready(Err(StoreError::CommandIdTaken(id)));
        }
        let result = inner.with_slot(&session, |slot, now| {
            if let Some(stored) = slot.commands.iter().find(|c| c.id == id) {
                return Ok(Err(stored.clone()));
            }
            let pending = slot
                .commands
                .iter()
                .filter(|c| c.status == CommandStatus::Pending)
                .count();
            if pending >= limits.max_pending_commands {
                return Err(StoreError::CommandQueueFull {
                    limit: limits.max_pending_commands,
                });
            }
            slot.commands.push(command.clone());
            // Keep every pending or leased command; past the cap drop the oldest claimed
            // or finished records (the hooks never acknowledge what they claim) down to
            // nine tenths of it, as the Redis backend does.
            let done = |c: &Command| c.status != CommandStatus::Pending && c.lease_until.is_none();
            if slot.commands.len() > limits.max_command_records {
                // The new command is not counted, as in the Redis script.
                let mut excess = slot.commands.len() - 1 - limits.max_command_records * 9 / 10;
                let mut dropped = Vec::new();
                slot.commands.retain(|c| {
                    let drop_it = excess > 0 && done(c);
                    if drop_it {
                        excess -= 1;
                        dropped.push(c.id.clone());
                    }
                    !drop_it
                });
                for gone in dropped {
                    inner.unindex_command(&gone);
                }
            }
            slot.touch(now, &limits);
            let mut idx = write(&inner.command_index);
            idx.insert(id.clone(), session.clone());
            drop(idx);
            let fields = session::command_queued_fields(&command);
            inner
                .bus
                .publish_notice(&session, Notice::CommandQueued, &fields, Timestamp(now));
            Ok(Ok(slot.deadline()))
        });
        let result = match result {
            None => Err(StoreError::SessionNotFound(session.clone())),
            Some(Err(e)) => Err(e),
            Some(Ok(Err(stored))) => Ok((stored, true)),
            Some(Ok(Ok(deadline))) => {
                inner.schedule(deadline, &session);
                Ok((command, false))
            }
        };
        ready(result)
    }

    fn claim_commands<'a>(
        &'a self,
        session: &'a SessionId,
        lease_ms: Option<u64>,
    ) -> StoreFuture<'a, Vec<Command>> {
        let limits = self.inner.limits;
        let claimed = self
            .inner
            .with_slot(session, |slot, now| {
                let mut claimed = Vec::new();
                for cmd in &mut slot.commands {
                    let lease_over = cmd.status == CommandStatus::Delivered
                        && cmd.lease_until.is_some_and(|until| until.0 <= now);
                    if cmd.status != CommandStatus::Pending && !lease_over {
                        continue;
                    }
                    let mut shown = cmd.clone();
                    shown.status = CommandStatus::Pending;
                    shown.lease_until = None;
                    claimed.push(shown);
                    cmd.status = CommandStatus::Delivered;
                    cmd.delivered_at = Some(Timestamp(now));
                    cmd.lease_until = lease_ms.map(|l| Timestamp(now + l));
                }
                if !claimed.is_empty() {
                    slot.touch(now, &limits);
                }
                claimed
            })
            .unwrap_or_default();
        ready(Ok(claimed))
    }

    fn ack_command<'a>(
        &'a self,
        command_id: &'a str,
        result: Option<Value>,
        error: Option<Value>,
    ) -> StoreFuture<'a, Option<Command>> {
        let limits = self.inner.limits;
        let Some(session) = self.inner.command_session(command_id) else {
            return ready(Ok(None));
        };
        let acked = self
            .inner
            .with_slot(&session, |slot, now| {
                let cmd = slot.commands.iter_mut().find(|c| c.id == command_id)?;
                cmd.status = session::ack_status(error.as_ref());
                cmd.acked_at = Some(Timestamp(now));
                cmd.lease_until = None;
                cmd.result = result;
                cmd.error = error;
                let cmd = cmd.clone();
                slot.touch(now, &limits);
                Some(cmd)
            })
            .flatten();
        ready(Ok(acked))
    }

    fn get_command<'a>(&'a self, command_id: &'a str) -> StoreFuture<'a, Option<Command>> {
        let Some(session) = self.inner.command_session(command_id) else {
            return ready(Ok(None));
        };
        let cmd = self
            .inner
            .with_slot(&session, |slot, _| {
                slot.commands.iter().find(|c| c.id == command_id).cloned()
            })
            .flatten();
        ready(Ok(cmd))
    }

    fn archive_mark<'a>(&'a self, session: &'a SessionId) -> StoreFuture<'a, bool> {
        let mut due = lock(&self.inner.archive_due);
        if due.len() >= super::MAX_ARCHIVE_DUE && !due.contains_key(session) {
            return ready(Ok(false));
        }
        due.insert(session.clone(), self.inner.now());
        ready(Ok(true))
    }

    fn archive_due(&self, before: Timestamp, limit: usize) -> StoreFuture<'_, Vec<SessionId>> {
        let due = lock(&self.inner.archive_due);
        let mut oldest: Vec<(u64, &SessionId)> = due
            .iter()
            .filter(|(_, at)| **at <= before.0)
            .map(|(id, at)| (*at, id))
            .collect();
        oldest.sort_unstable();
        let ids = oldest.into_iter().take(limit).map(|(_, id)| id.clone());
        ready(Ok(ids.collect()))
    }

    /// One instance owns a memory store: it holds every lease.
    fn take_lease<'a>(&'a self, _name: &'a str, _ttl_ms: u64) -> StoreFuture<'a, Option<u64>> {
        ready(Ok(None))
    }

    fn archive_filed<'a>(
        &'a self,
        session: &'a SessionId,
        read_at: Timestamp,
    ) -> StoreFuture<'a, ()> {
        let mut due = lock(&self.inner.archive_due);
        if due.get(session).is_some_and(|at| *at <= read_at.0) {
            due.remove(session);
        }
        ready(Ok(()))
    }
}
