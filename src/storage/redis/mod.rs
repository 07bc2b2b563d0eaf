//! `RedisStore`: everything in Redis, shared by any number of instances.
//!
//! Key layout (prefix `REDIS_PREFIX`, default `afw:`), every key with a TTL:
//!
//! | key | type | TTL |
//! |---|---|---|
//! | `sessions:{id}` | STRING, JSON session | session |
//! | `events:{id}` | LIST of JSON events (with `seq`), capped | session |
//! | `seq:{id}` | STRING, the session's last `seq` | session |
//! | `chains:{id}` | LIST of chain ids | session |
//! | `chain:{chainId}` | STRING, JSON chain | session |
//! | `commands:{id}` | LIST of pending command ids | queue |
//! | `input:{id}` | LIST of JSON input items | queue |
//! | `leases:{id}` | ZSET command id → lease deadline (ms) | queue |
//! | `cmdids:{id}` | SET of the session's command ids | queue |
//! | `command:{cmdId}` | HASH: `json`, `sessionId`, `status`, `deliveredAt`, ... | queue |
//! | `index:sessions` | ZSET session id → last activity (ms) | session |
//! | `archive:due` | ZSET session id → when it was marked due for archival (ms) | until filed |
//! | `lease:{name}` | STRING, the holder's instance id (`archive:{id}`, `archive-sweep`) | lease term |
//!
//! Writes are Lua scripts ([`scripts`]), one atomic round trip each. Sessions
//! and chains are derived in Rust and committed with a compare-and-set on the session; a
//! per-instance cache of the last committed state makes that one round trip when this
//! instance wrote last. Events reach subscribers through `PUBLISH` inside the same script,
//! in `seq` order, and come back to every instance (this one included) through
//! [`bridge`].
//!
//! The connection is [`link`]'s: dialled through the injected connector (never
//! `redis::Client`), with bounded timeouts; while Redis is unreachable every operation
//! fails fast with [`StoreError::Unavailable`].

use crate::metrics::DirectionLabels;
use crate::sync::lock;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{Script, Value as RValue};
use serde_json::{Map, Value};

pub(crate) mod bridge;
mod channel;
mod codec;
pub(crate) mod figures;
mod keys;
mod link;
mod scripts;

pub(crate) use link::{LinkTimeouts, RedisLink, RedisTarget, RedisUrlError};

use channel::{event_message, notice_message};
use codec::{CommandRecord, bulk, command_from_hash, int, parse_json, stored_event, to_json};
use link::public_reason;

use self::keys::Keys;
use super::{
    Appended, Cursor, EventPage, EventQuery, MAX_INPUT_KEYS, Pushed, SessionFilter, SessionPage,
    SessionUpdate, Store, StoreError, StoreFuture, StoreHealth, StoreLimits, UserCursor,
    UserSessions, UsersPage,
};
use crate::domain::derive;
use crate::domain::model::{
    Chain, Command, CommandStatus, InputItem, LastPrompt, NewEvent, Notice, Session, SessionId,
    StoredEvent, Timestamp,
};
use crate::domain::session;
use crate::ports::Clock;

/// What this instance last committed for a session: the exact stored JSON (the
/// compare-and-set token) and its parsed form.
#[derive(Clone)]
struct Cached {
    json: String,
    session: Session,
    chains: Vec<Chain>,
}

const CACHE_CAP: usize = 4096;
/// Compare-and-set attempts before giving up with 503. Only writers on *other* instances
/// can make an attempt fail (this instance serialises its own per session), and each retry
/// waits a jittered, growing pause, so running out takes sustained cross-instance
/// contention on one session.
const MAX_ATTEMPTS: u32 = 50;
const SESSION_LOCKS: usize = 64;

struct Scripts {
    commit: Script,
    load: Script,
    read: Script,
    push_input: Script,
    push_command: Script,
    claim: Script,
    ack: Script,
    delete: Script,
    user_sessions: Script,
    archive_mark: Script,
    take_lease: Script,
    archive_filed: Script,
}

/// The Redis backend. Cheap to clone; clones share the state.
#[derive(Clone)]
pub(crate) struct RedisStore(Arc<RedisCore>);

impl std::ops::Deref for RedisStore {
    type Target = RedisCore;

    fn deref(&self) -> &RedisCore {
        &self.0
    }
}

/// Appends waiting to be committed together (group commit), per session.
#[derive(Default)]
struct Group {
    draining: bool,
    queue: std::collections::VecDeque<PendingAppend>,
}

/// Most events committed in one script call; more wait for the next round.
const MAX_GROUP_EVENTS: usize = 1000;

/// If a drain task ends abnormally (a panic), fails what is still queued and clears the
/// group, so later appends start a new drain instead of waiting forever.
struct DrainGuard<'a> {
    core: &'a RedisCore,
    session: &'a SessionId,
    finished: bool,
}

impl Drop for DrainGuard<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(group) = lock(&self.core.groups).remove(self.session) {
            for pending in group.queue {
                let _ = pending
                    .reply
                    .send(Err(StoreError::Unavailable("append aborted".into())));
            }
        }
    }
}

struct PendingAppend {
    events: Vec<NewEvent>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Appended>, StoreError>>,
}

pub(crate) struct RedisCore {
    link: Arc<RedisLink>,
    keys: Keys,
    channel: String,
    /// Written (with a short TTL) by each health check: PING alone answers while Redis
    /// refuses writes.
    health_key: String,
    instance_id: String,
    limits: StoreLimits,
    clock: Arc<dyn Clock>,
    cache: Mutex<BTreeMap<SessionId, Cached>>,
    /// Serialises this instance's mutations of one session (sharded by session id).
    session_locks: Vec<tokio::sync::Mutex<()>>,
    groups: Mutex<BTreeMap<SessionId, Group>>,
    scripts: Scripts,
}

/// What a session-level commit writes besides the session itself.
#[derive(Default)]
struct Effects {
    last_seq: Option<u64>,
    /// New events and their `eventId`s ('' for none).
    events: Vec<(bytes::Bytes, String)>,
    chains: Vec<(String, String, bool)>,
    publish: Vec<String>,
    pop_input: bool,
}

enum CommitOutcome {
    Done(Option<String>),
    Changed,
    NothingToPop,
    /// Nothing was written: these `eventId`s are already stored, with these `seq`s.
    Duplicates(KnownIds),
}

/// `eventId`s a commit found already stored, with their `seq`s: the next attempt leaves
/// them out.
type KnownIds = BTreeMap<String, u64>;

impl RedisStore {
    pub(crate) fn new(
        link: Arc<RedisLink>,
        prefix: &str,
        instance_id: &str,
        limits: StoreLimits,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let keys = Keys::new(prefix);
        Self(Arc::new(RedisCore {
            link,
            channel: keys.channel(),
            health_key: keys.health(instance_id),
            keys,
            instance_id: instance_id.to_owned(),
            limits,
            clock,
            cache: Mutex::new(BTreeMap::new()),
            session_locks: (0..SESSION_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            groups: Mutex::new(BTreeMap::new()),
            scripts: Scripts {
                commit: Script::new(&scripts::commit()),
                load: Script::new(&scripts::load()),
                read: Script::new(&scripts::read()),
                push_input: Script::new(&scripts::push_input()),
                push_command: Script::new(&scripts::push_command()),
                claim: Script::new(&scripts::claim()),
                ack: Script::new(&scripts::ack()),
                delete: Script::new(&scripts::delete()),
                user_sessions: Script::new(&scripts::user_sessions()),
                archive_mark: Script::new(&scripts::archive_mark()),
                take_lease: Script::new(&scripts::take_lease()),
                archive_filed: Script::new(&scripts::archive_filed()),
            },
        }))
    }
}

impl RedisCore {
    /// The Pub/Sub channel, `{prefix}events`.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.clock.now_ms())
    }

    /// The Pub/Sub message of a notice from this instance, stamped now.
    fn notice(&self, sid: &SessionId, kind: Notice, fields: &Map<String, Value>) -> String {
        notice_message(sid, kind, self.now(), &self.instance_id, fields)
    }

    fn session_lock(&self, sid: &SessionId) -> &tokio::sync::Mutex<()> {
        // A specified hash: the same shard in every run and toolchain (determinism).
        &self.session_locks[(crate::hash::of(sid) % SESSION_LOCKS as u64) as usize]
    }

    fn cached(&self, sid: &SessionId) -> Option<Cached> {
        lock(&self.cache).get(sid).cloned()
    }

    /// Counts `n` messages a script just published.
    fn published(&self, n: usize) {
        self.link
            .metrics()
            .pubsub_messages
            .get_or_create(&DirectionLabels { direction: "out" })
            .inc_by(n as u64);
    }

    fn remember(&self, sid: &SessionId, entry: Option<Cached>) {
        let mut cache = lock(&self.cache);
        match entry {
            Some(entry) => {
                if cache.len() >= CACHE_CAP && !cache.contains_key(sid) {
                    cache.pop_first();
                }
                cache.insert(sid.clone(), entry);
            }
            None => {
                cache.remove(sid);
            }
        }
    }

    /// The session as stored, with its chains, or `None`.
    async fn load(&self, sid: &SessionId) -> Result<Option<Cached>, StoreError> {
        let mut inv = self.scripts.load.prepare_invoke();
        inv.arg(self.keys.prefix()).arg(sid.as_str());
        let items: Vec<RValue> = self.link.invoke("load", &inv).await?;
        let Some(json) = items.first().and_then(bulk) else {
            self.remember(sid, None);
            return Ok(None);
        };
        let session: Session = parse_json("session", &json)?;
        let chains = items[1..]
            .iter()
            .filter_map(bulk)
            .map(|c| parse_json::<Chain>("chain", &c))
            .collect::<Result<Vec<_>, _>>()?;
        let entry = Cached {
            json: String::from_utf8(json)
                .map_err(|_| StoreError::Corrupt("session is not UTF-8".into()))?,
            session,
            chains,
        };
        self.remember(sid, Some(entry.clone()));
        Ok(Some(entry))
    }

    async fn commit(
        &self,
        sid: &SessionId,
        current: Option<&Cached>,
        session: &Session,
        effects: &Effects,
    ) -> Result<CommitOutcome, StoreError> {
        // The compare-and-set token: the session exactly as stored ('' for none).
        let expected = current.map_or("", |c| c.json.as_str());
        let new_json = to_json(session);
        let mut inv = self.scripts.commit.prepare_invoke();
        inv.arg(self.keys.prefix())
            .arg(sid.as_str())
            .arg(self.limits.session_ttl_ms)
            .arg(self.limits.queue_ttl_ms)
            .arg(&self.channel)
            .arg(expected)
            .arg(&new_json)
            .arg(session.last_activity_at.0)
            .arg(effects.last_seq.map(|s| s.to_string()).unwrap_or_default())
            .arg(self.limits.max_events_per_session)
            .arg(if effects.pop_input { "1" } else { "0" })
            .arg(self.limits.session_budget_bytes)
            // The epoch is written once, with the session that starts the incarnation.
            .arg(if expected.is_empty() {
                session.epoch.as_str()
            } else {
                ""
            })
            .arg(effects.events.len());
        for (ev, id) in &effects.events {
            inv.arg(ev.as_ref()).arg(id);
        }
        inv.arg(effects.chains.len());
        for (id, json, new) in &effects.chains {
            inv.arg(id).arg(json).arg(if *new { "1" } else { "0" });
        }
        inv.arg(effects.publish.len());
        for msg in &effects.publish {
            inv.arg(msg);
        }
        let before = current.map(|c| &c.session);
        inv.arg(before.map_or("", |s| s.status.as_str()))
            .arg(before.and_then(|s| s.user.as_deref()).unwrap_or(""))
            .arg(session.status.as_str())
            .arg(session.user.as_deref().unwrap_or(""));
        let reply: Vec<RValue> = match self.link.invoke("commit", &inv).await {
            Ok(reply) => reply,
            Err(e) => {
                // The write may or may not have happened: forget what we believe.
                self.remember(sid, None);
                return Err(e);
            }
        };
        match reply.first().and_then(int) {
            Some(1) => Ok(CommitOutcome::Done({
                self.published(effects.publish.len());
                reply
                    .get(1)
                    .and_then(bulk)
                    .and_then(|b| String::from_utf8(b).ok())
            })),
            Some(2) => Ok(CommitOutcome::NothingToPop),
            Some(3) => Ok(CommitOutcome::Duplicates(pairs(reply.get(1))?)),
            _ => {
                self.remember(sid, None);
                Ok(CommitOutcome::Changed)
            }
        }
    }

    /// Runs a session mutation as compare-and-set until it lands: `mutate` gets the
    /// current state (or `None`) and returns the new session, chains and effects, or `None`
    /// to write nothing.
    async fn mutate_session<T>(
        &self,
        sid: &SessionId,
        mut mutate: impl FnMut(
            Option<&Cached>,
            &KnownIds,
        ) -> Result<Option<(Session, Vec<Chain>, Effects, T)>, StoreError>,
    ) -> Result<Option<(T, Option<String>)>, StoreError> {
        let _serial = self.session_lock(sid).lock().await;
        let mut fresh = false;
        let mut known = KnownIds::new();
        let mut retry_at_once = false;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 && !std::mem::take(&mut retry_at_once) {
                // Another instance wrote in between: back off a little, with jitter, so
                // competing instances do not retry in lockstep.
                let ms = self.link.jitter_ms(u64::from(attempt.min(20)));
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let current = match self.cached(sid) {
                Some(c) if !fresh => Some(c),
                _ => self.load(sid).await?,
            };
            let Some((session, chains, effects, out)) = mutate(current.as_ref(), &known)? else {
                return Ok(None);
            };
            match self
                .commit(sid, current.as_ref(), &session, &effects)
                .await?
            {
                CommitOutcome::Done(item) => {
                    self.remember(
                        sid,
                        Some(Cached {
                            json: to_json(&session),
                            session,
                            chains,
                        }),
                    );
                    return Ok(Some((out, item)));
                }
                CommitOutcome::NothingToPop => return Ok(None),
                CommitOutcome::Changed => fresh = true,
                CommitOutcome::Duplicates(found) => {
                    // The state read was current: derive again without these, at once.
                    known.extend(found);
                    retry_at_once = true;
                }
            }
        }
        Err(StoreError::Unavailable(
            "too much contention on one session; retry".into(),
        ))
    }

    /// Reads and parses one JSON string key; `None` if it does not exist.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        key: String,
    ) -> Result<Option<T>, StoreError> {
        let raw: Option<Vec<u8>> = self.link.query(redis::cmd("GET").arg(&key)).await?;
        raw.map(|r| parse_json(what, &r)).transpose()
    }

    /// Changes an existing session (and nothing else) and publishes the notice `notice`
    /// makes of the result, in the same script; `None` if it does not exist.
    async fn modify_session(
        &self,
        sid: &SessionId,
        change: impl Fn(&mut Session),
        notice: impl Fn(&Session) -> (Notice, Map<String, Value>),
    ) -> Result<Option<Session>, StoreError> {
        let done = self
            .mutate_session(sid, |current, _| {
                let Some(current) = current else {
                    return Ok(None);
                };
                let mut session = current.session.clone();
                change(&mut session);
                let (kind, fields) = notice(&session);
                let effects = Effects {
                    publish: vec![self.notice(sid, kind, &fields)],
                    ..Effects::default()
                };
                Ok(Some((
                    session.clone(),
                    current.chains.clone(),
                    effects,
                    session,
                )))
            })
            .await?;
        Ok(done.map(|(s, _)| s))
    }

    /// Commits appends queued for one session, all that are waiting at each round, until
    /// none are left (group commit: one compare-and-set for many events under load).
    async fn drain_appends(&self, session: SessionId) {
        let mut guard = DrainGuard {
            core: self,
            session: &session,
            finished: false,
        };
        loop {
            let batch = {
                let mut groups = lock(&self.groups);
                let Some(group) = groups.get_mut(&session) else {
                    guard.finished = true;
                    return;
                };
                if group.queue.is_empty() {
                    groups.remove(&session);
                    guard.finished = true;
                    return;
                }
                let mut batch = Vec::new();
                let mut size = 0;
                while let Some(next) = group.queue.front() {
                    if size > 0 && size + next.events.len() > MAX_GROUP_EVENTS {
                        break;
                    }
                    size += next.events.len();
                    batch.extend(group.queue.pop_front());
                }
                batch
            };
            let counts: Vec<usize> = batch.iter().map(|p| p.events.len()).collect();
            let mut replies = Vec::with_capacity(batch.len());
            let mut events = Vec::with_capacity(counts.iter().sum());
            for pending in batch {
                events.extend(pending.events);
                replies.push(pending.reply);
            }
            let result = self.append_now(&session, events).await;
            let mut seqs = result.as_ref().map(|s| s.iter().cloned()).ok();
            for (reply, n) in replies.into_iter().zip(counts) {
                let answer = match (&result, seqs.as_mut()) {
                    (Ok(_), Some(all)) => Ok(all.by_ref().take(n).collect()),
                    (Err(e), _) => Err(e.clone()),
                    (Ok(_), None) => Err(StoreError::Corrupt("lost sequence numbers".into())),
                };
                let _ = reply.send(answer);
            }
        }
    }

    async fn append_now(
        &self,
        session: &SessionId,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, StoreError> {
        let Some(first) = events.first() else {
            return Ok(Vec::new());
        };
        let now = self.now();
        let done = self
            .mutate_session(session, |current, known| {
                let (mut s, mut chains) = match current {
                    Some(c) => (c.session.clone(), c.chains.clone()),
                    None => {
                        let mut s = derive::session_for_unknown(first, now);
                        s.epoch = self.link.draw_epoch();
                        (s, Vec::new())
                    }
                };
                let before = chains.clone();
                let mut effects = Effects::default();
                let mut outcomes = Vec::with_capacity(events.len());
                // Ids stored by this commit, so a repeat within it is a duplicate too.
                let mut fresh: BTreeMap<&str, u64> = BTreeMap::new();
                for ev in &events {
                    let id = ev.event_id();
                    if let Some(&seq) = id.and_then(|id| known.get(id).or(fresh.get(id))) {
                        outcomes.push(Appended {
                            seq,
                            duplicate: true,
                            epoch: s.epoch.clone(),
                        });
                        continue;
                    }
                    derive::apply_event(&mut s, &mut chains, ev, now);
                    // Commits on a session are serial (compare-and-set), so its event
                    // count is its sequence.
                    let seq = s.event_count;
                    let stored = StoredEvent {
                        seq,
                        kind: ev.kind,
                        timestamp: ev.timestamp,
                        json: ev.json_with_seq(seq),
                    };
                    effects.publish.push(event_message(
                        session,
                        &stored,
                        &s.epoch,
                        &self.instance_id,
                        Some(&s),
                    ));
                    if let Some(id) = id {
                        fresh.insert(id, seq);
                    }
                    effects
                        .events
                        .push((stored.json, id.unwrap_or_default().to_owned()));
                    outcomes.push(Appended {
                        seq,
                        duplicate: false,
                        epoch: s.epoch.clone(),
                    });
                }
                // Every event a duplicate: the commit only refreshes the TTLs (a retry is
                // activity too).
                if !effects.events.is_empty() {
                    effects.last_seq = Some(s.event_count);
                }
                effects.chains = changed_chains(&before, &chains);
                Ok(Some((s, chains, effects, outcomes)))
            })
            .await?;
        Ok(done.map(|(outcomes, _)| outcomes).unwrap_or_default())
    }
}

impl RedisCore {
    /// `count` members of a listing index from `offset`, newest score first, at or below
    /// the cursor's score and, among its ties (descending member order), past the cursor's
    /// member; with how many the index answered (before that filter), to page on.
    async fn index_page(
        &self,
        index: &str,
        after: Option<(u64, &str)>,
        offset: usize,
        count: usize,
    ) -> Result<(Vec<(String, u64)>, usize), StoreError> {
        let max = after.map_or("+inf".to_owned(), |(score, _)| score.to_string());
        let scored: Vec<(String, f64)> = self
            .link
            .query(
                redis::cmd("ZRANGE")
                    .arg(index)
                    .arg(max)
                    .arg("-inf")
                    .arg("BYSCORE")
                    .arg("REV")
                    .arg("LIMIT")
                    .arg(offset)
                    .arg(count)
                    .arg("WITHSCORES"),
            )
            .await?;
        let got = scored.len();
        let entries = scored
            .into_iter()
            .map(|(member, score)| (member, score as u64))
            .filter(|(member, score)| match after {
                Some((s, m)) if *score == s => member.as_str() < m,
                _ => true,
            })
            .collect();
        Ok((entries, got))
    }

    /// The users of a page with their session counts and newest sessions, dropping users
    /// none of whose sessions is left (and their index entries).
    async fn users_with_sessions(
        &self,
        candidates: &[(String, u64)],
        per_user: usize,
    ) -> Result<Vec<(u64, UserSessions)>, StoreError> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.user_sessions.prepare_invoke();
        inv.arg(self.keys.prefix()).arg(per_user);
        for (user, _) in candidates {
            inv.arg(user);
        }
        let reply: Vec<RValue> = self.link.invoke("user_sessions", &inv).await?;
        let mut per: Vec<(usize, Vec<String>)> = Vec::with_capacity(candidates.len());
        for pair in reply.chunks(2) {
            let count = pair.first().and_then(int).unwrap_or(0).max(0) as usize;
            let ids = match pair.get(1) {
                Some(RValue::Array(ids)) => ids
                    .iter()
                    .filter_map(bulk)
                    .filter_map(|b| String::from_utf8(b).ok())
                    .collect(),
                _ => Vec::new(),
            };
            per.push((count, ids));
        }
        let keys: Vec<String> = per
            .iter()
            .flat_map(|(_, ids)| ids.iter().map(|id| self.keys.session(id)))
            .collect();
        let mut raws: Vec<Option<Vec<u8>>> = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1000) {
            let part: Vec<Option<Vec<u8>>> = self.link.query(redis::cmd("MGET").arg(chunk)).await?;
            raws.extend(part);
        }
        let mut raws = raws.into_iter();
        let mut out = Vec::new();
        let mut gone_users = Vec::new();
        for ((user, score), (count, ids)) in candidates.iter().zip(per) {
            let mut sessions = Vec::with_capacity(ids.len());
            let mut gone = Vec::new();
            for (id, raw) in ids.into_iter().zip(raws.by_ref()) {
                match raw {
                    Some(raw) => sessions.push(parse_json::<Session>("session", &raw)?),
                    None => gone.push(id),
                }
            }
            if !gone.is_empty() {
                let _: Result<i64, _> = self
                    .link
                    .query(redis::cmd("ZREM").arg(self.keys.by_user(user)).arg(&gone))
                    .await;
            }
            if sessions.is_empty() {
                gone_users.push(user.clone());
                continue;
            }
            let session_count = count.saturating_sub(gone.len());
            out.push((
                *score,
                UserSessions {
                    user: user.clone(),
                    session_count,
                    sessions,
                },
            ));
        }
        if !gone_users.is_empty() {
            let _: Result<i64, _> = self
                .link
                .query(redis::cmd("ZREM").arg(self.keys.users()).arg(&gone_users))
                .await;
        }
        Ok(out)
    }
}

/// A flat `{field, value, ...}` array inside a script's reply (a `HGETALL`, the ids a
/// commit found stored), read the way the client reads such replies.
fn pairs<T: redis::FromRedisValue + Default>(list: Option<&RValue>) -> Result<T, StoreError> {
    list.map_or(Ok(T::default()), |v| {
        redis::from_redis_value_ref(v)
            .map_err(|e| StoreError::Corrupt(format!("script reply: {e}")))
    })
}

/// A queue length no real queue has (its cap is far below), written into the `input:queued`
/// message where the script puts the real one.
const QUEUE_LENGTH_PLACEHOLDER: usize = 987_654_321_012;

/// The message's text before and after the placeholder.
fn split_at_placeholder(message: &str) -> (String, String) {
    let mark = QUEUE_LENGTH_PLACEHOLDER.to_string();
    match message.split_once(&mark) {
        Some((before, after)) => (before.to_owned(), after.to_owned()),
        None => (message.to_owned(), String::new()),
    }
}

/// The chains an event batch changed: `(id, json, new)`.
fn changed_chains(before: &[Chain], after: &[Chain]) -> Vec<(String, String, bool)> {
    after
        .iter()
        .filter_map(|c| match before.iter().find(|b| b.id == c.id) {
            Some(b) if b == c => None,
            Some(_) => Some((c.id.clone(), to_json(c), false)),
            None => Some((c.id.clone(), to_json(c), true)),
        })
        .collect()
}

impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            if let Err(e) = self.link.query::<String>(&redis::cmd("PING")).await {
                return Ok(StoreHealth {
                    error: Some(public_reason(&e)),
                    ..StoreHealth::default()
                });
            }
            let latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
            // PING answers while Redis refuses writes (OOM under noeviction, a read-only
            // replica): a small expiring write tells.
            let probe = redis::cmd("SET")
                .arg(&self.health_key)
                .arg(1)
                .arg("PX")
                .arg(10_000)
                .clone();
            let error = self.link.query::<()>(&probe).await.err();
            let error = error.as_ref().map(public_reason);
            Ok(StoreHealth {
                connected: true,
                writable: error.is_none(),
                latency_ms,
                error,
            })
        })
    }

    fn create_session(&self, session: Session) -> StoreFuture<'_, Session> {
        Box::pin(async move {
            let id = session.id.clone();
            let mut session = session;
            session.last_activity_at = self.now();
            session.epoch = self.link.draw_epoch();
            match self
                .commit(&id, None, &session, &Effects::default())
                .await?
            {
                CommitOutcome::Done(_) => {
                    self.remember(
                        &id,
                        Some(Cached {
                            json: to_json(&session),
                            session: session.clone(),
                            chains: Vec::new(),
                        }),
                    );
                    Ok(session)
                }
                _ => Err(StoreError::SessionExists(id)),
            }
        })
    }

    fn get_session<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Session>> {
        Box::pin(self.get_json("session", self.keys.session(id.as_str())))
    }

    fn update_session<'a>(
        &'a self,
        id: &'a SessionId,
        update: SessionUpdate,
    ) -> StoreFuture<'a, Option<Session>> {
        Box::pin(async move {
            let now = self.now();
            self.modify_session(
                id,
                |s| session::apply_update(s, update.clone(), now),
                |s| (Notice::SessionUpdated, session::updated_fields(s)),
            )
            .await
        })
    }

    fn delete_session<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut inv = self.scripts.delete.prepare_invoke();
            inv.arg(self.keys.prefix())
                .arg(id.as_str())
                .arg(&self.channel)
                .arg(self.notice(id, Notice::SessionDeleted, &Map::new()));
            let existed: i64 = self.link.invoke("delete", &inv).await?;
            self.remember(id, None);
            if existed == 1 {
                self.published(1);
            }
            Ok(existed == 1)
        })
    }

    fn list_sessions(&self, filter: SessionFilter) -> StoreFuture<'_, SessionPage> {
        Box::pin(async move {
            // One index, read one page at a time from the cursor: the user's or the
            // status's when asked (the user's is the smaller; the status is then checked
            // here), else every session's. The cost follows the page, not the total.
            let index = match (&filter.user, filter.status) {
                (Some(user), _) => self.keys.by_user(user),
                (None, Some(status)) => self.keys.by_status(status.as_str()),
                (None, None) => self.keys.index(),
            };
            let want = filter.limit.saturating_add(1);
            let chunk = want.clamp(64, 1000);
            let mut found: Vec<(u64, Session)> = Vec::new();
            let mut gone: Vec<String> = Vec::new();
            let mut offset = 0usize;
            while found.len() < want {
                let (entries, got) = self
                    .index_page(
                        &index,
                        filter
                            .cursor
                            .as_ref()
                            .map(|c| (c.last_activity.0, c.id.as_str())),
                        offset,
                        chunk,
                    )
                    .await?;
                offset += got;
                if !entries.is_empty() {
                    let keys: Vec<String> = entries
                        .iter()
                        .map(|(id, _)| self.keys.session(id))
                        .collect();
                    let raws: Vec<Option<Vec<u8>>> =
                        self.link.query(redis::cmd("MGET").arg(&keys)).await?;
                    for ((id, score), raw) in entries.into_iter().zip(raws) {
                        let Some(raw) = raw else {
                            gone.push(id);
                            continue;
                        };
                        let s: Session = parse_json("session", &raw)?;
                        if filter.status.is_none_or(|st| s.status == st) {
                            found.push((score, s));
                        }
                    }
                }
                if got < chunk {
                    break;
                }
            }
            if !gone.is_empty() {
                // Expired sessions leave their index entries behind; tidy them up.
                let _: Result<i64, _> = self
                    .link
                    .query(redis::cmd("ZREM").arg(&index).arg(&gone))
                    .await;
            }
            let more = found.len() > filter.limit;
            found.truncate(filter.limit);
            let next_cursor = more
                .then(|| found.last())
                .flatten()
                .map(|(score, s)| Cursor {
                    last_activity: Timestamp(*score),
                    id: s.id.clone(),
                });
            Ok(SessionPage {
                sessions: found.into_iter().map(|(_, s)| s).collect(),
                next_cursor,
            })
        })
    }

    fn list_users(
        &self,
        limit: usize,
        cursor: Option<UserCursor>,
        per_user: usize,
    ) -> StoreFuture<'_, UsersPage> {
        Box::pin(async move {
            // A page of users from the users index, their newest sessions from their own
            // indexes in one script call, the sessions in one MGET: three round trips a
            // page. Users and sessions that expired meanwhile are tidied away.
            let index = self.keys.users();
            // Users none of whose sessions is left are dropped: then the next round fetches
            // more.
            let ask = limit + 1;
            let mut users = Vec::new();
            let mut offset = 0usize;
            loop {
                let after = cursor
                    .as_ref()
                    .map(|c| (c.last_activity.0, c.user.as_str()));
                let (candidates, got) = self.index_page(&index, after, offset, ask).await?;
                offset += got;
                users.extend(self.users_with_sessions(&candidates, per_user).await?);
                if users.len() > limit || got < ask {
                    break;
                }
            }
            let more = users.len() > limit;
            users.truncate(limit);
            let next_cursor = more
                .then(|| users.last())
                .flatten()
                .map(|(score, u)| UserCursor {
                    last_activity: Timestamp(*score),
                    user: u.user.clone(),
                });
            Ok(UsersPage {
                users: users.into_iter().map(|(_, u)| u).collect(),
                next_cursor,
            })
        })
    }

    fn chains<'a>(&'a self, session: &'a SessionId) -> StoreFuture<'a, Vec<Chain>> {
        Box::pin(async move {
            Ok(self
                .load(session)
                .await?
                .map(|c| c.chains)
                .unwrap_or_default())
        })
    }

    fn session_with_chains<'a>(
        &'a self,
        id: &'a SessionId,
    ) -> StoreFuture<'a, Option<(Session, Vec<Chain>)>> {
        Box::pin(async move { Ok(self.load(id).await?.map(|c| (c.session, c.chains))) })
    }

    fn chain<'a>(&'a self, chain_id: &'a str) -> StoreFuture<'a, Option<Chain>> {
        Box::pin(self.get_json("chain", self.keys.chain(chain_id)))
    }

    fn append_events<'a>(
        &'a self,
        session: &'a SessionId,
        events: Vec<NewEvent>,
    ) -> StoreFuture<'a, Vec<Appended>> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(Vec::new());
            }
            let (reply, answer) = tokio::sync::oneshot::channel();
            let start_draining = {
                let mut groups = lock(&self.groups);
                let group = groups.entry(session.clone()).or_default();
                group.queue.push_back(PendingAppend { events, reply });
                !std::mem::replace(&mut group.draining, true)
            };
            if start_draining {
                // A task of its own, so a request that goes away cannot strand the
                // appends queued behind it.
                let core = Arc::clone(&self.0);
                let session = session.clone();
                tokio::spawn(async move { core.drain_appends(session).await });
            }
            answer
                .await
                .map_err(|_| StoreError::Unavailable("append was abandoned".into()))?
        })
    }

    fn read_events<'a>(
        &'a self,
        session: &'a SessionId,
        query: EventQuery,
    ) -> StoreFuture<'a, EventPage> {
        Box::pin(async move {
            // A `since` filter needs timestamps: fetch everything after `after` and filter.
            let (limit, newest) = if query.since.is_some() {
                (-1i64, false)
            } else {
                (i64::try_from(query.limit).unwrap_or(i64::MAX), query.newest)
            };
            let mut inv = self.scripts.read.prepare_invoke();
            inv.arg(self.keys.prefix())
                .arg(session.as_str())
                .arg(
                    query
                        .after
                        .map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX)),
                )
                .arg(limit)
                .arg(if newest { "1" } else { "0" });
            let items: Vec<RValue> = self.link.invoke("read", &inv).await?;
            let last_seq = items.first().and_then(int).unwrap_or(0).max(0) as u64;
            let len = items.get(1).and_then(int).unwrap_or(0).max(0) as u64;
            let epoch = items
                .get(2)
                .and_then(bulk)
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|e| !e.is_empty());
            let mut events = items
                .iter()
                .skip(3)
                .filter_map(bulk)
                .map(stored_event)
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(since) = query.since {
                events.retain(|e| e.timestamp >= since);
                if query.newest {
                    let skip = events.len().saturating_sub(query.limit);
                    events.drain(..skip);
                } else {
                    events.truncate(query.limit);
                }
            }
            Ok(EventPage {
                events,
                last_seq,
                first_seq: (len > 0).then(|| last_seq + 1 - len),
                epoch,
            })
        })
    }

    fn set_awaiting<'a>(
        &'a self,
        session: &'a SessionId,
        prompt: LastPrompt,
        fields: Map<String, Value>,
    ) -> StoreFuture<'a, Session> {
        Box::pin(async move {
            let now = self.now();
            self.modify_session(
                session,
                |s| session::apply_awaiting(s, prompt.clone(), now),
                |_| (Notice::Awaiting, fields.clone()),
            )
            .await?
            .ok_or_else(|| StoreError::SessionNotFound(session.clone()))
        })
    }

    fn push_input<'a>(
        &'a self,
        session: &'a SessionId,
        item: InputItem,
        keyed: bool,
    ) -> StoreFuture<'a, Pushed> {
        Box::pin(async move {
            // The queue length is known only inside the script: the message is sent as the
            // two halves around it.
            let (before, after) = split_at_placeholder(&self.notice(
                session,
                Notice::InputQueued,
                &session::input_queued_fields(&item.id, QUEUE_LENGTH_PLACEHOLDER),
            ));
            let mut inv = self.scripts.push_input.prepare_invoke();
            inv.arg(self.keys.prefix())
                .arg(session.as_str())
                .arg(self.limits.session_ttl_ms)
                .arg(self.limits.queue_ttl_ms)
                .arg(self.limits.max_input_queue)
                .arg(to_json(&item))
                .arg(&self.channel)
                .arg(before)
                .arg(after)
                .arg(if keyed { item.id.as_str() } else { "" })
                .arg(self.now().0)
                .arg(MAX_INPUT_KEYS);
            let reply: Vec<i64> = self.link.invoke("push_input", &inv).await?;
            let length = |n: i64| n.max(0) as usize;
            match reply.as_slice() {
                [-1] => Err(StoreError::SessionNotFound(session.clone())),
                [-2] => Err(StoreError::InputQueueFull {
                    limit: self.limits.max_input_queue,
                }),
                [-3, n] => Ok(Pushed {
                    queue_length: length(*n),
                    duplicate: true,
                }),
                [n] => {
                    self.published(1);
                    Ok(Pushed {
                        queue_length: length(*n),
                        duplicate: false,
                    })
                }
                _ => Err(StoreError::Corrupt("unexpected reply to push_input".into())),
            }
        })
    }

    fn pop_input<'a>(&'a self, session: &'a SessionId) -> StoreFuture<'a, Option<InputItem>> {
        Box::pin(async move {
            let now = self.now();
            let done = self
                .mutate_session(session, |current, _| {
                    let Some(current) = current else {
                        return Ok(None);
                    };
                    let mut s = current.session.clone();
                    session::apply_input_popped(&mut s, now);
                    let effects = Effects {
                        pop_input: true,
                        ..Effects::default()
                    };
                    Ok(Some((s, current.chains.clone(), effects, ())))
                })
                .await?;
            match done {
                Some((_, Some(raw))) => Ok(Some(parse_json("input item", raw.as_bytes())?)),
                _ => Ok(None),
            }
        })
    }

    fn push_command(&self, command: Command) -> StoreFuture<'_, (Command, bool)> {
        Box::pin(async move {
            let record = CommandRecord {
                id: command.id.clone(),
                session_id: command.session_id.clone(),
                kind: command.kind,
                payload: command.payload.clone(),
                issued_at: command.issued_at,
            };
            let mut inv = self.scripts.push_command.prepare_invoke();
            inv.arg(self.keys.prefix())
                .arg(command.session_id.as_str())
                .arg(self.limits.session_ttl_ms)
                .arg(self.limits.queue_ttl_ms)
                .arg(&command.id)
                .arg(to_json(&record))
                .arg(self.limits.max_pending_commands)
                .arg(self.limits.max_command_records)
                .arg(&self.channel)
                .arg(self.notice(
                    &command.session_id,
                    Notice::CommandQueued,
                    &session::command_queued_fields(&command),
                ));
            let reply: Vec<RValue> = self.link.invoke("push_command", &inv).await?;
            match reply.first().and_then(int) {
                Some(1) => {
                    self.published(1);
                    Ok((command, false))
                }
                Some(-2) => Err(StoreError::CommandQueueFull {
                    limit: self.limits.max_pending_commands,
                }),
                Some(-3) => Ok((command_from_hash(&pairs(reply.get(1))?)?, true)),
                Some(-4) => Err(StoreError::CommandIdTaken(command.id.clone())),
                _ => Err(StoreError::SessionNotFound(command.session_id.clone())),
            }
        })
    }

    fn claim_commands<'a>(
        &'a self,
        session: &'a SessionId,
        lease_ms: Option<u64>,
    ) -> StoreFuture<'a, Vec<Command>> {
        Box::pin(async move {
            let mut inv = self.scripts.claim.prepare_invoke();
            inv.arg(self.keys.prefix())
                .arg(session.as_str())
                .arg(self.limits.session_ttl_ms)
                .arg(self.limits.queue_ttl_ms)
                .arg(self.now().0)
                .arg(lease_ms.unwrap_or(0));
            let raws: Vec<Vec<u8>> = self.link.invoke("claim", &inv).await?;
            let mut commands = raws
                .iter()
                .map(|raw| {
                    let r: CommandRecord = parse_json("command", raw)?;
                    Ok(Command {
                        id: r.id,
                        session_id: r.session_id,
                        kind: r.kind,
                        payload: r.payload,
                        // Shown as they were when claimed.
                        status: CommandStatus::Pending,
                        issued_at: r.issued_at,
                        delivered_at: None,
                        acked_at: None,
                        result: None,
                        error: None,
                        lease_until: None,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            // Re-leased commands come first from the script: order all by issue time, and
            // keep the queue's order (FIFO) within one millisecond (a stable sort; ids carry
            // a random suffix and must not decide).
            commands.sort_by_key(|c| c.issued_at);
            Ok(commands)
        })
    }

    fn ack_command<'a>(
        &'a self,
        command_id: &'a str,
        result: Option<Value>,
        error: Option<Value>,
    ) -> StoreFuture<'a, Option<Command>> {
        Box::pin(async move {
            let status = session::ack_status(error.as_ref()).as_str();
            let mut inv = self.scripts.ack.prepare_invoke();
            inv.arg(self.keys.prefix())
                .arg(command_id)
                .arg(self.now().0)
                .arg(status)
                .arg(result.as_ref().map(to_json).unwrap_or_default())
                .arg(error.as_ref().map(to_json).unwrap_or_default())
                .arg(self.limits.queue_ttl_ms);
            let fields: Option<BTreeMap<String, Vec<u8>>> = self.link.invoke("ack", &inv).await?;
            fields.map(|f| command_from_hash(&f)).transpose()
        })
    }

    fn get_command<'a>(&'a self, command_id: &'a str) -> StoreFuture<'a, Option<Command>> {
        Box::pin(async move {
            let key = self.keys.command(command_id);
            let fields: BTreeMap<String, Vec<u8>> =
                self.link.query(redis::cmd("HGETALL").arg(&key)).await?;
            if fields.is_empty() {
                return Ok(None);
            }
            command_from_hash(&fields).map(Some)
        })
    }
    fn archive_mark<'a>(&'a self, session: &'a SessionId) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut inv = self.scripts.archive_mark.prepare_invoke();
            inv.arg(self.keys.prefix())
                .arg(session.as_str())
                .arg(self.now().0)
                .arg(self.limits.session_ttl_ms)
                .arg(super::MAX_ARCHIVE_DUE);
            let marked: i64 = self.link.invoke("archive_mark", &inv).await?;
            Ok(marked == 1)
        })
    }

    fn archive_due(&self, before: Timestamp, limit: usize) -> StoreFuture<'_, Vec<SessionId>> {
        Box::pin(async move {
            let ids: Vec<String> = self
                .link
                .query(
                    redis::cmd("ZRANGE")
                        .arg(self.keys.archive_due())
                        .arg("-inf")
                        .arg(before.0)
                        .arg("BYSCORE")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(limit),
                )
                .await?;
            ids.iter()
                .map(|id| {
                    SessionId::parse(id)
                        .map_err(|_| StoreError::Corrupt(format!("due session id {id:?}")))
                })
                .collect()
        })
    }

    fn take_lease<'a>(&'a self, name: &'a str, ttl_ms: u64) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let mut inv = self.scripts.take_lease.prepare_invoke();
            inv.arg(self.keys.prefix())
                .arg(name)
                .arg(&self.instance_id)
                .arg(ttl_ms.max(1));
            let left: i64 = self.link.invoke("take_lease", &inv).await?;
            Ok(u64::try_from(left).ok())
        })
    }

    fn archive_filed<'a>(
        &'a self,
        session: &'a SessionId,
        read_at: Timestamp,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inv = self.scripts.archive_filed.prepare_invoke();
            inv.arg(self.keys.prefix())
                .arg(session.as_str())
                .arg(read_at.0)
                .arg(super::archive_lease(session))
                .arg(&self.instance_id);
            let _: i64 = self.link.invoke("archive_filed", &inv).await?;
            Ok(())
        })
    }
}
