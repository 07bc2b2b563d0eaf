//! A simulated Redis: exactly the commands and semantics afw uses, over any byte stream.
//!
//! It speaks RESP2 ([`redis_protocol`]'s codec) and keeps strings, lists, hashes, sets and
//! sorted sets with TTLs on `tokio::time` (virtual time inside turmoil, paused time in
//! tests), Pub/Sub, and Lua scripts run by an embedded Lua 5.1 (the version Redis embeds),
//! with `redis.call` / `redis.pcall` and Redis's type conversions. Everything runs on one
//! thread with no await inside a command or a script, so each is atomic, as in Redis.
//! Iteration is over ordered maps: replies and fan-out are deterministic.
//!
//! A conformance suite (`tests/conformance`) sends the same command sequences to this host
//! and to a real `redis-server` and requires identical replies.
//!
//! Crash modes: a host built inside the turmoil host closure loses everything when the host
//! restarts; one built outside it (shared by the restarts) keeps its data, like Redis with
//! AOF.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mlua::Lua;
use redis_protocol::codec::Resp2;
use redis_protocol::resp2::types::BytesFrame;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::Framed;

mod hashes;
mod info;
mod keys;
mod lists;
mod lua;
mod memory;
mod pubsub;
mod sets;
mod strings;
mod zsets;

/// `ERR wrong number of arguments` for a known command.
fn wrong_args(name: &str) -> Reply {
    Reply::Error(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

/// A reply, before encoding.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
}

impl Reply {
    fn ok() -> Self {
        Reply::Status("OK".into())
    }

    fn err(msg: &str) -> Self {
        Reply::Error(msg.to_owned())
    }

    fn wrong_type() -> Self {
        Reply::err("WRONGTYPE Operation against a key holding the wrong kind of value")
    }

    fn syntax() -> Self {
        Reply::err("ERR syntax error")
    }

    fn not_int() -> Self {
        Reply::err("ERR value is not an integer or out of range")
    }

    fn to_frame(&self) -> BytesFrame {
        match self {
            Reply::Status(s) => BytesFrame::SimpleString(Bytes::from(s.clone())),
            Reply::Error(e) => BytesFrame::Error(e.clone().into()),
            Reply::Int(i) => BytesFrame::Integer(*i),
            Reply::Bulk(b) => BytesFrame::BulkString(Bytes::from(b.clone())),
            Reply::Nil => BytesFrame::Null,
            Reply::Array(items) => BytesFrame::Array(items.iter().map(Reply::to_frame).collect()),
        }
    }
}

#[derive(Debug, Clone)]
enum Value {
    Str(Vec<u8>),
    List(VecDeque<Vec<u8>>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
    ZSet(BTreeMap<Vec<u8>, f64>),
}

#[derive(Debug, Clone)]
struct Entry {
    value: Value,
    /// On the host's clock (see [`RedisHost::with_clock`]).
    expires: Option<Duration>,
}

/// What "now" is for TTLs: a duration since a fixed zero.
pub type HostClock = Rc<dyn Fn() -> Duration>;

type Subscriber = (u64, mpsc::UnboundedSender<Reply>);

/// The keyspace and everything shared by the connections of one simulated Redis.
struct Db {
    keys: BTreeMap<Vec<u8>, Entry>,
    /// `INFO`'s counters, see [`info`].
    stats: info::Stats,
    scripts: BTreeMap<String, String>,
    channels: BTreeMap<Vec<u8>, Vec<Subscriber>>,
    clock: HostClock,
    /// `maxmemory` in bytes (0: no limit), see [`memory`].
    maxmemory: u64,
    /// While a script runs: whether it has written yet.
    script_dirty: Option<bool>,
    /// The error of the `redis.call` that ended the running script, if one did.
    call_error: Option<String>,
    /// A restart with persistence replays the AOF until this time on the host clock;
    /// meanwhile most commands answer `LOADING`.
    loading_until: Duration,
    /// How long the restart that just happened loads: its clock starts with the first
    /// command served after it (a restart is applied from outside the host, where the
    /// simulation's clock cannot be read; the clients redial at once).
    load_for: Option<Duration>,
}

/// The commands a real Redis serves while it loads its dataset (their `loading` flag),
/// of those clients here send; every other one answers `LOADING`.
const SERVED_WHILE_LOADING: &[&str] = &[
    "AUTH",
    "CLIENT",
    "COMMAND",
    "CONFIG",
    "DEBUG",
    "ECHO",
    "HELLO",
    "INFO",
    "PSUBSCRIBE",
    "PUBLISH",
    "PUNSUBSCRIBE",
    "QUIT",
    "RESET",
    "SELECT",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
];

/// How long a restart with persistence loads: per live key (real Redis loads at a rate),
/// at most [`LOAD_MAX`] (an outage in the scale of the simulation's others).
const LOAD_PER_KEY: Duration = Duration::from_millis(5);
const LOAD_MAX: Duration = Duration::from_millis(2_000);

fn int_arg(arg: &[u8]) -> Option<i64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

fn float_arg(arg: &[u8]) -> Option<f64> {
    match std::str::from_utf8(arg).ok()? {
        "-inf" => Some(f64::NEG_INFINITY),
        "+inf" | "inf" => Some(f64::INFINITY),
        s => s.parse().ok(),
    }
}

/// Redis's formatting of a score in replies (integral scores without a fraction).
fn format_score(score: f64) -> Vec<u8> {
    if score.fract() == 0.0 && score.abs() < 1e17 {
        format!("{}", score as i64).into_bytes()
    } else {
        format!("{score}").into_bytes()
    }
}

/// Resolves Redis's inclusive, negative-from-the-end range on a sequence of `len`.
fn range(len: usize, start: i64, stop: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len).then_some((start as usize, stop as usize))
}

impl Db {
    fn now(&self) -> Duration {
        (self.clock)()
    }

    fn live(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let now = self.now();
        if self
            .keys
            .get(key)
            .is_some_and(|e| e.expires.is_some_and(|at| at <= now))
        {
            self.keys.remove(key);
            self.stats.expired_keys += 1;
        }
        self.keys.get_mut(key)
    }

    fn exists(&mut self, key: &[u8]) -> bool {
        self.live(key).is_some()
    }

    /// The value for a write of this kind, created empty if missing; `None` on a type clash.
    fn entry_for(&mut self, key: &[u8], empty: fn() -> Value) -> Option<&mut Value> {
        if self.live(key).is_none() {
            self.keys.insert(
                key.to_vec(),
                Entry {
                    value: empty(),
                    expires: None,
                },
            );
        }
        let entry = self.keys.get_mut(key)?;
        let fresh = empty();
        (std::mem::discriminant(&entry.value) == std::mem::discriminant(&fresh))
            .then_some(&mut entry.value)
    }

    /// Removes a collection that became empty (Redis deletes empty keys).
    fn drop_if_empty(&mut self, key: &[u8]) {
        let empty = match self.keys.get(key).map(|e| &e.value) {
            Some(Value::List(l)) => l.is_empty(),
            Some(Value::Hash(h)) => h.is_empty(),
            Some(Value::Set(s)) => s.is_empty(),
            Some(Value::ZSet(z)) => z.is_empty(),
            _ => false,
        };
        if empty {
            self.keys.remove(key);
        }
    }

    /// Runs one command (not EVAL, not (UN)SUBSCRIBE: those need the host), in the module of
    /// its data type.
    fn exec(&mut self, args: &[Vec<u8>]) -> Reply {
        let Some(name) = args.first() else {
            return Reply::err("ERR empty command");
        };
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        let a = &args[1..];
        if let Some(refused) = self.admit(&name) {
            return refused;
        }
        match name.as_str() {
            "CONFIG" => memory::config(self, a),
            "INFO" => info::exec(self),
            "PING" | "SELECT" | "AUTH" | "CLIENT" | "FLUSHALL" | "FLUSHDB" | "DBSIZE" | "DEL"
            | "EXISTS" | "TYPE" | "PEXPIRE" | "EXPIRE" | "PTTL" | "TTL" => {
                keys::exec(self, &name, a)
            }
            "GET" | "MGET" | "SET" | "INCRBY" => strings::exec(self, &name, a),
            "RPUSH" | "LPUSH" | "LPOP" | "LLEN" | "LINDEX" | "LRANGE" | "LTRIM" => {
                lists::exec(self, &name, a)
            }
            "HSET" | "HGET" | "HDEL" | "HGETALL" => hashes::exec(self, &name, a),
            "SADD" | "SCARD" | "SREM" | "SMEMBERS" => sets::exec(self, &name, a),
            "ZADD" | "ZREM" | "ZSCORE" | "ZCARD" | "ZREMRANGEBYSCORE" | "ZREMRANGEBYRANK"
            | "ZRANGE" | "ZRANGEBYSCORE" => zsets::exec(self, &name, a),
            "PUBLISH" => pubsub::exec(self, &name, a),
            _ => Reply::Error(format!(
                "ERR unknown command '{}', with args beginning with: ",
                name.to_ascii_lowercase()
            )),
        }
    }
}

/// One simulated Redis server. Cheap to clone; clones share the data.
#[derive(Clone)]
pub struct RedisHost {
    db: Rc<RefCell<Db>>,
    lua: Rc<Lua>,
    next_conn: Rc<Cell<u64>>,
    /// Nothing is served before this time on the host clock (`DEBUG SLEEP`, a `SIGSTOP`):
    /// connections stay open, commands wait in them, replies come after.
    stalled_until: Rc<Cell<Duration>>,
    /// Bumped by `CLIENT KILL TYPE pubsub`: every subscribed connection closes.
    pubsub_kills: Rc<tokio::sync::watch::Sender<u64>>,
}

impl Default for RedisHost {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisHost {
    /// A host whose TTLs run on tokio time since its creation (tests outside turmoil).
    pub fn new() -> Self {
        let zero = Instant::now();
        Self::with_clock(Rc::new(move || zero.elapsed()))
    }

    /// A host whose TTLs run on `clock`. In the simulation this is turmoil's global virtual
    /// time, which keeps going across restarts of the host (a bounced host gets a new
    /// tokio runtime, whose `Instant`s mean nothing to the old deadlines).
    pub fn with_clock(clock: HostClock) -> Self {
        let db = Rc::new(RefCell::new(Db {
            keys: BTreeMap::new(),
            stats: info::Stats::default(),
            scripts: BTreeMap::new(),
            channels: BTreeMap::new(),
            clock,
            maxmemory: 0,
            script_dirty: None,
            call_error: None,
            loading_until: Duration::ZERO,
            load_for: None,
        }));
        let lua = Lua::new();
        lua::install_redis_api(&lua, &db).expect("the redis Lua API installs");
        Self {
            db,
            lua: Rc::new(lua),
            next_conn: Rc::new(Cell::new(1)),
            stalled_until: Rc::new(Cell::new(Duration::ZERO)),
            pubsub_kills: Rc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// Stops serving for `d`, as `DEBUG SLEEP` or a `SIGSTOP` does: connections stay open
    /// and new ones are accepted, but no command runs and no reply or message leaves until
    /// then; what was sent meanwhile runs afterwards, in order.
    pub fn stall(&self, d: Duration) {
        let now = self.db.borrow().now();
        self.stalled_until
            .set(self.stalled_until.get().max(now + d));
    }

    async fn wait_while_stalled(&self) {
        loop {
            let now = self.db.borrow().now();
            let until = self.stalled_until.get();
            if until <= now {
                return;
            }
            tokio::time::sleep(until - now).await;
        }
    }

    /// `CLIENT KILL TYPE pubsub`: closes every connection in subscribe mode; how many.
    pub fn kill_pubsub(&self) -> i64 {
        let conns: BTreeSet<u64> = self
            .db
            .borrow()
            .channels
            .values()
            .flatten()
            .map(|(conn, _)| *conn)
            .collect();
        self.pubsub_kills.send_modify(|k| *k += 1);
        conns.len() as i64
    }

    /// Sets `maxmemory` (0: no limit), as `CONFIG SET maxmemory` does.
    pub fn set_maxmemory(&self, bytes: u64) {
        self.db.borrow_mut().maxmemory = bytes;
    }

    /// What a restart keeps with persistence (AOF): the keys. The script cache is not
    /// persisted by Redis, with or without AOF, so a restarted server answers `NOSCRIPT`
    /// to the `EVALSHA` of every script it had loaded. It loads the AOF first, for a time
    /// that grows with the data (see [`Self::restart_loading`]).
    pub fn restart(&self) {
        let keys = self.live_keys().len() as u32;
        self.restart_loading((LOAD_PER_KEY * keys).min(LOAD_MAX));
    }

    /// [`Self::restart`], loading for `d`: until then every command but those Redis serves
    /// while loading (`PUBLISH`, `SUBSCRIBE`, `SELECT`, ...) answers `LOADING`.
    pub fn restart_loading(&self, d: Duration) {
        let mut db = self.db.borrow_mut();
        db.scripts.clear();
        db.load_for = Some(d);
    }

    /// `LOADING`, when the server is loading and `name` is not served meanwhile.
    fn refuse_while_loading(&self, name: &str) -> Option<Reply> {
        let mut db = self.db.borrow_mut();
        let now = db.now();
        if let Some(d) = db.load_for.take() {
            db.loading_until = now + d;
        }
        (now < db.loading_until && !SERVED_WHILE_LOADING.contains(&name))
            .then(|| Reply::err("LOADING Redis is loading the dataset in memory"))
    }

    /// Every key still live, with the time it has left (`None`: no TTL), in key order.
    pub fn live_keys(&self) -> Vec<(String, Option<Duration>)> {
        let mut db = self.db.borrow_mut();
        let now = db.now();
        db.keys.retain(|_, e| e.expires.is_none_or(|at| at > now));
        db.keys
            .iter()
            .map(|(k, e)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    e.expires.map(|at| at - now),
                )
            })
            .collect()
    }

    /// What a restart without persistence keeps: nothing, keys and scripts alike.
    pub fn wipe(&self) {
        let mut db = self.db.borrow_mut();
        db.keys.clear();
        db.scripts.clear();
    }

    /// Runs one command of a connection (everything but (UN)SUBSCRIBE), once admitted
    /// (see `dispatch`).
    pub fn command(&self, args: &[Vec<u8>]) -> Reply {
        let name = args
            .first()
            .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
            .unwrap_or_default();
        match name.as_str() {
            "EVAL" if args.len() >= 3 => {
                let body = String::from_utf8_lossy(&args[1]).into_owned();
                let sha = sha1_smol::Sha1::from(body.as_bytes()).digest().to_string();
                self.db
                    .borrow_mut()
                    .scripts
                    .insert(sha.clone(), body.clone());
                lua::eval(&self.lua, &self.db, &sha, &body, &args[2..])
            }
            "EVALSHA" if args.len() >= 3 => {
                let sha = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
                let body = self.db.borrow().scripts.get(&sha).cloned();
                match body {
                    Some(body) => lua::eval(&self.lua, &self.db, &sha, &body, &args[2..]),
                    None => Reply::err("NOSCRIPT No matching script. Please use EVAL."),
                }
            }
            "SCRIPT" if args.len() >= 3 && args[1].eq_ignore_ascii_case(b"LOAD") => {
                let body = String::from_utf8_lossy(&args[2]).into_owned();
                let sha = sha1_smol::Sha1::from(body.as_bytes()).digest().to_string();
                self.db.borrow_mut().scripts.insert(sha.clone(), body);
                Reply::Bulk(sha.into_bytes())
            }
            _ => self.db.borrow_mut().exec(args),
        }
    }

    /// Serves one client connection until it closes.
    pub async fn serve<S>(&self, io: S)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        self.db.borrow_mut().stats.clients += 1;
        let mut framed = Framed::new(io, Resp2::default());
        let (push_tx, mut push_rx) = mpsc::unbounded_channel::<Reply>();
        let mut subscribed: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut kills = self.pubsub_kills.subscribe();
        loop {
            tokio::select! {
                biased;
                _ = kills.changed(), if !subscribed.is_empty() => break,
                push = push_rx.recv() => {
                    let Some(push) = push else { break };
                    self.wait_while_stalled().await;
                    if framed.send(push.to_frame()).await.is_err() {
                        break;
                    }
                }
                frame = framed.next() => {
                    let Some(Ok(frame)) = frame else { break };
                    let args: Vec<Vec<u8>> = match frame {
                        BytesFrame::Array(items) => items
                            .into_iter()
                            .filter_map(|f| match f {
                                BytesFrame::BulkString(b) | BytesFrame::SimpleString(b) => Some(b.to_vec()),
                                BytesFrame::Integer(i) => Some(i.to_string().into_bytes()),
                                _ => None,
                            })
                            .collect(),
                        _ => continue,
                    };
                    self.wait_while_stalled().await;
                    let replies = self.dispatch(id, &args, &mut subscribed, &push_tx);
                    // `DEBUG SLEEP` answers when it is over.
                    self.wait_while_stalled().await;
                    let mut failed = false;
                    for reply in replies {
                        if framed.send(reply.to_frame()).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed {
                        break;
                    }
                }
            }
        }
        let mut db = self.db.borrow_mut();
        db.stats.clients = db.stats.clients.saturating_sub(1);
        for channel in subscribed {
            if let Some(subs) = db.channels.get_mut(&channel) {
                subs.retain(|(conn, _)| *conn != id);
            }
        }
    }

    fn dispatch(
        &self,
        conn: u64,
        args: &[Vec<u8>],
        subscribed: &mut BTreeSet<Vec<u8>>,
        push: &mpsc::UnboundedSender<Reply>,
    ) -> Vec<Reply> {
        let name = args
            .first()
            .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
            .unwrap_or_default();
        // Even PING in subscribe mode answers `LOADING` while the server loads.
        if let Some(refused) = self.refuse_while_loading(&name) {
            return vec![refused];
        }
        match name.as_str() {
            "SUBSCRIBE" if args.len() >= 2 => args[1..]
                .iter()
                .map(|channel| {
                    if subscribed.insert(channel.clone()) {
                        self.db
                            .borrow_mut()
                            .channels
                            .entry(channel.clone())
                            .or_default()
                            .push((conn, push.clone()));
                    }
                    Reply::Array(vec![
                        Reply::Bulk(b"subscribe".to_vec()),
                        Reply::Bulk(channel.clone()),
                        Reply::Int(subscribed.len() as i64),
                    ])
                })
                .collect(),
            "UNSUBSCRIBE" => {
                let channels: Vec<Vec<u8>> = if args.len() > 1 {
                    args[1..].to_vec()
                } else {
                    subscribed.iter().cloned().collect()
                };
                channels
                    .into_iter()
                    .map(|channel| {
                        subscribed.remove(&channel);
                        if let Some(subs) = self.db.borrow_mut().channels.get_mut(&channel) {
                            subs.retain(|(c, _)| *c != conn);
                        }
                        Reply::Array(vec![
                            Reply::Bulk(b"unsubscribe".to_vec()),
                            Reply::Bulk(channel),
                            Reply::Int(subscribed.len() as i64),
                        ])
                    })
                    .collect()
            }
            "DEBUG" if args.len() == 3 && args[1].eq_ignore_ascii_case(b"SLEEP") => {
                match String::from_utf8_lossy(&args[2]).parse::<f64>() {
                    Ok(secs) if secs >= 0.0 => {
                        self.stall(Duration::from_secs_f64(secs));
                        vec![Reply::Status("OK".into())]
                    }
                    _ => vec![Reply::err("ERR value is not a valid float")],
                }
            }
            "CLIENT"
                if args.len() == 4
                    && args[1].eq_ignore_ascii_case(b"KILL")
                    && args[2].eq_ignore_ascii_case(b"TYPE")
                    && args[3].eq_ignore_ascii_case(b"pubsub") =>
            {
                vec![Reply::Int(self.kill_pubsub())]
            }
            // In subscribe mode, PING answers as a push: ["pong", message].
            "PING" if !subscribed.is_empty() => vec![Reply::Array(vec![
                Reply::Bulk(b"pong".to_vec()),
                Reply::Bulk(args.get(1).cloned().unwrap_or_default()),
            ])],
            _ => vec![self.command(args)],
        }
    }
}
