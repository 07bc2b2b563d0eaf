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
use mlua::{Lua, MultiValue, Value as LuaValue};
use redis_protocol::codec::Resp2;
use redis_protocol::resp2::types::BytesFrame;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::Framed;

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
    scripts: BTreeMap<String, String>,
    channels: BTreeMap<Vec<u8>, Vec<Subscriber>>,
    clock: HostClock,
}

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

    fn publish(&mut self, channel: &[u8], message: &[u8]) -> i64 {
        let Some(subs) = self.channels.get_mut(channel) else {
            return 0;
        };
        subs.retain(|(_, tx)| !tx.is_closed());
        for (_, tx) in subs.iter() {
            let _ = tx.send(Reply::Array(vec![
                Reply::Bulk(b"message".to_vec()),
                Reply::Bulk(channel.to_vec()),
                Reply::Bulk(message.to_vec()),
            ]));
        }
        subs.len() as i64
    }

    /// Runs one command (not EVAL, not (UN)SUBSCRIBE: those need the host).
    fn exec(&mut self, args: &[Vec<u8>]) -> Reply {
        let Some(name) = args.first() else {
            return Reply::err("ERR empty command");
        };
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        let a = &args[1..];
        let arity = |n: usize| a.len() >= n;
        let wrong_args = || {
            Reply::Error(format!(
                "ERR wrong number of arguments for '{}' command",
                name.to_ascii_lowercase()
            ))
        };
        match name.as_str() {
            "PING" => match a.first() {
                Some(m) => Reply::Bulk(m.clone()),
                None => Reply::Status("PONG".into()),
            },
            "SELECT" | "AUTH" => Reply::ok(),
            "CLIENT" => Reply::ok(),
            "FLUSHALL" | "FLUSHDB" => {
                self.keys.clear();
                Reply::ok()
            }
            "DBSIZE" => {
                let now = self.now();
                self.keys.retain(|_, e| e.expires.is_none_or(|at| at > now));
                Reply::Int(self.keys.len() as i64)
            }
            "GET" if arity(1) => match self.live(&a[0]).map(|e| &e.value) {
                None => Reply::Nil,
                Some(Value::Str(s)) => Reply::Bulk(s.clone()),
                Some(_) => Reply::wrong_type(),
            },
            "MGET" if arity(1) => Reply::Array(
                a.iter()
                    .map(|k| match self.live(k).map(|e| &e.value) {
                        Some(Value::Str(s)) => Reply::Bulk(s.clone()),
                        _ => Reply::Nil,
                    })
                    .collect(),
            ),
            "SET" if arity(2) => {
                let mut expires = None;
                let mut nx = false;
                let mut i = 2;
                while i < a.len() {
                    match String::from_utf8_lossy(&a[i]).to_ascii_uppercase().as_str() {
                        "PX" | "EX" if i + 1 < a.len() => {
                            let Some(n) = int_arg(&a[i + 1]).filter(|n| *n > 0) else {
                                return Reply::err("ERR invalid expire time in 'set' command");
                            };
                            let unit = if a[i].eq_ignore_ascii_case(b"EX") {
                                1000
                            } else {
                                1
                            };
                            expires = Some(self.now() + Duration::from_millis(n as u64 * unit));
                            i += 2;
                        }
                        "NX" => {
                            nx = true;
                            i += 1;
                        }
                        _ => return Reply::syntax(),
                    }
                }
                if nx && self.exists(&a[0]) {
                    return Reply::Nil;
                }
                self.keys.insert(
                    a[0].clone(),
                    Entry {
                        value: Value::Str(a[1].clone()),
                        expires,
                    },
                );
                Reply::ok()
            }
            "INCRBY" if a.len() == 2 => {
                let Some(by) = int_arg(&a[1]) else {
                    return Reply::err("ERR value is not an integer or out of range");
                };
                let current = match self.live(&a[0]).map(|e| &e.value) {
                    None => 0,
                    Some(Value::Str(s)) => match int_arg(s) {
                        Some(n) => n,
                        None => return Reply::err("ERR value is not an integer or out of range"),
                    },
                    Some(_) => return Reply::wrong_type(),
                };
                let Some(next) = current.checked_add(by) else {
                    return Reply::err("ERR increment or decrement would overflow");
                };
                // Like Redis, the key keeps its TTL.
                let expires = self.live(&a[0]).and_then(|e| e.expires);
                self.keys.insert(
                    a[0].clone(),
                    Entry {
                        value: Value::Str(next.to_string().into_bytes()),
                        expires,
                    },
                );
                Reply::Int(next)
            }
            "DEL" if arity(1) => {
                let mut n = 0;
                for k in a {
                    if self.live(k).is_some() {
                        self.keys.remove(k);
                        n += 1;
                    }
                }
                Reply::Int(n)
            }
            "EXISTS" if arity(1) => Reply::Int(a.iter().filter(|k| self.exists(k)).count() as i64),
            "TYPE" if arity(1) => Reply::Status(
                match self.live(&a[0]).map(|e| &e.value) {
                    None => "none",
                    Some(Value::Str(_)) => "string",
                    Some(Value::List(_)) => "list",
                    Some(Value::Hash(_)) => "hash",
                    Some(Value::Set(_)) => "set",
                    Some(Value::ZSet(_)) => "zset",
                }
                .into(),
            ),
            "PEXPIRE" | "EXPIRE" if arity(2) => {
                let Some(n) = int_arg(&a[1]) else {
                    return Reply::not_int();
                };
                let ms = if name == "EXPIRE" {
                    n.saturating_mul(1000)
                } else {
                    n
                };
                let at = self.now() + Duration::from_millis(ms.max(0) as u64);
                match self.live(&a[0]) {
                    None => Reply::Int(0),
                    Some(_) if ms <= 0 => {
                        self.keys.remove(&a[0]);
                        Reply::Int(1)
                    }
                    Some(e) => {
                        e.expires = Some(at);
                        Reply::Int(1)
                    }
                }
            }
            "PTTL" | "TTL" if arity(1) => match self.live(&a[0]).map(|e| e.expires) {
                None => Reply::Int(-2),
                Some(None) => Reply::Int(-1),
                Some(Some(at)) => {
                    let left = at.saturating_sub(self.now()).as_millis() as i64;
                    Reply::Int(if name == "TTL" {
                        (left + 500) / 1000
                    } else {
                        left
                    })
                }
            },
            "RPUSH" | "LPUSH" if arity(2) => {
                let Some(Value::List(list)) =
                    self.entry_for(&a[0], || Value::List(VecDeque::new()))
                else {
                    return Reply::wrong_type();
                };
                for v in &a[1..] {
                    if name == "RPUSH" {
                        list.push_back(v.clone());
                    } else {
                        list.push_front(v.clone());
                    }
                }
                Reply::Int(list.len() as i64)
            }
            "LPOP" if arity(1) => {
                let reply = match self.live(&a[0]).map(|e| &mut e.value) {
                    None => Reply::Nil,
                    Some(Value::List(l)) => l.pop_front().map_or(Reply::Nil, Reply::Bulk),
                    Some(_) => Reply::wrong_type(),
                };
                self.drop_if_empty(&a[0]);
                reply
            }
            "LLEN" if arity(1) => match self.live(&a[0]).map(|e| &e.value) {
                None => Reply::Int(0),
                Some(Value::List(l)) => Reply::Int(l.len() as i64),
                Some(_) => Reply::wrong_type(),
            },
            "LINDEX" if arity(2) => {
                let Some(i) = int_arg(&a[1]) else {
                    return Reply::not_int();
                };
                match self.live(&a[0]).map(|e| &e.value) {
                    None => Reply::Nil,
                    Some(Value::List(l)) => {
                        let i = if i < 0 { l.len() as i64 + i } else { i };
                        usize::try_from(i)
                            .ok()
                            .and_then(|i| l.get(i))
                            .map_or(Reply::Nil, |v| Reply::Bulk(v.clone()))
                    }
                    Some(_) => Reply::wrong_type(),
                }
            }
            "LRANGE" if arity(3) => {
                let (Some(start), Some(stop)) = (int_arg(&a[1]), int_arg(&a[2])) else {
                    return Reply::not_int();
                };
                match self.live(&a[0]).map(|e| &e.value) {
                    None => Reply::Array(vec![]),
                    Some(Value::List(l)) => Reply::Array(match range(l.len(), start, stop) {
                        Some((s, e)) => l.range(s..=e).map(|v| Reply::Bulk(v.clone())).collect(),
                        None => vec![],
                    }),
                    Some(_) => Reply::wrong_type(),
                }
            }
            "LTRIM" if arity(3) => {
                let (Some(start), Some(stop)) = (int_arg(&a[1]), int_arg(&a[2])) else {
                    return Reply::not_int();
                };
                match self.live(&a[0]).map(|e| &mut e.value) {
                    None => {}
                    Some(Value::List(l)) => match range(l.len(), start, stop) {
                        Some((s, e)) => {
                            l.truncate(e + 1);
                            l.drain(..s);
                        }
                        None => l.clear(),
                    },
                    Some(_) => return Reply::wrong_type(),
                }
                self.drop_if_empty(&a[0]);
                Reply::ok()
            }
            "HSET" if a.len() >= 3 && a.len() % 2 == 1 => {
                let Some(Value::Hash(h)) = self.entry_for(&a[0], || Value::Hash(BTreeMap::new()))
                else {
                    return Reply::wrong_type();
                };
                let mut added = 0;
                for pair in a[1..].chunks(2) {
                    if h.insert(pair[0].clone(), pair[1].clone()).is_none() {
                        added += 1;
                    }
                }
                Reply::Int(added)
            }
            "HGET" if arity(2) => match self.live(&a[0]).map(|e| &e.value) {
                None => Reply::Nil,
                Some(Value::Hash(h)) => h.get(&a[1]).map_or(Reply::Nil, |v| Reply::Bulk(v.clone())),
                Some(_) => Reply::wrong_type(),
            },
            "HDEL" if arity(2) => {
                let reply = match self.live(&a[0]).map(|e| &mut e.value) {
                    None => Reply::Int(0),
                    Some(Value::Hash(h)) => {
                        Reply::Int(a[1..].iter().filter(|f| h.remove(*f).is_some()).count() as i64)
                    }
                    Some(_) => Reply::wrong_type(),
                };
                self.drop_if_empty(&a[0]);
                reply
            }
            "HGETALL" if arity(1) => match self.live(&a[0]).map(|e| &e.value) {
                None => Reply::Array(vec![]),
                // Real Redis returns small hashes in insertion order; callers of afw read
                // them as maps, and the conformance suite compares them as maps.
                Some(Value::Hash(h)) => Reply::Array(
                    h.iter()
                        .flat_map(|(k, v)| [Reply::Bulk(k.clone()), Reply::Bulk(v.clone())])
                        .collect(),
                ),
                Some(_) => Reply::wrong_type(),
            },
            "SADD" if arity(2) => {
                let Some(Value::Set(set)) = self.entry_for(&a[0], || Value::Set(BTreeSet::new()))
                else {
                    return Reply::wrong_type();
                };
                Reply::Int(a[1..].iter().filter(|m| set.insert((*m).clone())).count() as i64)
            }
            "SCARD" if arity(1) => match self.live(&a[0]).map(|e| &e.value) {
                None => Reply::Int(0),
                Some(Value::Set(s)) => Reply::Int(s.len() as i64),
                Some(_) => Reply::wrong_type(),
            },
            "SREM" if arity(2) => {
                let reply = match self.live(&a[0]).map(|e| &mut e.value) {
                    None => Reply::Int(0),
                    Some(Value::Set(set)) => {
                        Reply::Int(a[1..].iter().filter(|m| set.remove(*m)).count() as i64)
                    }
                    Some(_) => Reply::wrong_type(),
                };
                self.drop_if_empty(&a[0]);
                reply
            }
            "SMEMBERS" if arity(1) => match self.live(&a[0]).map(|e| &e.value) {
                None => Reply::Array(vec![]),
                Some(Value::Set(s)) => {
                    Reply::Array(s.iter().map(|m| Reply::Bulk(m.clone())).collect())
                }
                Some(_) => Reply::wrong_type(),
            },
            "ZADD" if a.len() >= 3 && a.len() % 2 == 1 => {
                let mut pairs = Vec::new();
                for pair in a[1..].chunks(2) {
                    let Some(score) = float_arg(&pair[0]) else {
                        return Reply::err("ERR value is not a valid float");
                    };
                    pairs.push((score, pair[1].clone()));
                }
                let Some(Value::ZSet(z)) = self.entry_for(&a[0], || Value::ZSet(BTreeMap::new()))
                else {
                    return Reply::wrong_type();
                };
                Reply::Int(
                    pairs
                        .into_iter()
                        .filter(|(s, m)| z.insert(m.clone(), *s).is_none())
                        .count() as i64,
                )
            }
            "ZREM" if arity(2) => {
                let reply = match self.live(&a[0]).map(|e| &mut e.value) {
                    None => Reply::Int(0),
                    Some(Value::ZSet(z)) => {
                        Reply::Int(a[1..].iter().filter(|m| z.remove(*m).is_some()).count() as i64)
                    }
                    Some(_) => Reply::wrong_type(),
                };
                self.drop_if_empty(&a[0]);
                reply
            }
            "ZRANGE" | "ZRANGEBYSCORE" if arity(3) => {
                let by_score = name == "ZRANGEBYSCORE";
                let with_scores = a
                    .get(3)
                    .is_some_and(|o| o.eq_ignore_ascii_case(b"WITHSCORES"));
                let sorted: Vec<(f64, Vec<u8>)> = match self.live(&a[0]).map(|e| &e.value) {
                    None => vec![],
                    Some(Value::ZSet(z)) => {
                        let mut v: Vec<(f64, Vec<u8>)> =
                            z.iter().map(|(m, s)| (*s, m.clone())).collect();
                        v.sort_by(|x, y| x.0.total_cmp(&y.0).then_with(|| x.1.cmp(&y.1)));
                        v
                    }
                    Some(_) => return Reply::wrong_type(),
                };
                let picked: Vec<(f64, Vec<u8>)> = if by_score {
                    let (Some(min), Some(max)) = (float_arg(&a[1]), float_arg(&a[2])) else {
                        return Reply::err("ERR min or max is not a float");
                    };
                    sorted
                        .into_iter()
                        .filter(|(s, _)| *s >= min && *s <= max)
                        .collect()
                } else {
                    let (Some(start), Some(stop)) = (int_arg(&a[1]), int_arg(&a[2])) else {
                        return Reply::not_int();
                    };
                    match range(sorted.len(), start, stop) {
                        Some((s, e)) => sorted[s..=e].to_vec(),
                        None => vec![],
                    }
                };
                Reply::Array(
                    picked
                        .into_iter()
                        .flat_map(|(s, m)| {
                            let mut out = vec![Reply::Bulk(m)];
                            if with_scores {
                                out.push(Reply::Bulk(format_score(s)));
                            }
                            out
                        })
                        .collect(),
                )
            }
            "PUBLISH" if arity(2) => Reply::Int(self.publish(&a[0], &a[1])),
            "GET" | "MGET" | "SET" | "INCRBY" | "DEL" | "EXISTS" | "TYPE" | "PEXPIRE"
            | "EXPIRE" | "PTTL" | "TTL" | "RPUSH" | "LPUSH" | "LPOP" | "LLEN" | "LINDEX"
            | "LRANGE" | "LTRIM" | "HSET" | "HGET" | "HDEL" | "HGETALL" | "SADD" | "SCARD"
            | "SREM" | "SMEMBERS" | "ZADD" | "ZREM" | "ZRANGE" | "ZRANGEBYSCORE" | "PUBLISH" => {
                wrong_args()
            }
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
}

impl Default for RedisHost {
    fn default() -> Self {
        Self::new()
    }
}

/// Redis → Lua conversion for `redis.call` results.
fn to_lua(lua: &Lua, reply: Reply) -> mlua::Result<LuaValue> {
    Ok(match reply {
        Reply::Int(i) => LuaValue::Number(i as f64),
        Reply::Bulk(b) => LuaValue::String(lua.create_string(&b)?),
        Reply::Nil => LuaValue::Boolean(false),
        Reply::Status(s) => {
            let t = lua.create_table()?;
            t.set("ok", s)?;
            LuaValue::Table(t)
        }
        Reply::Error(e) => {
            let t = lua.create_table()?;
            t.set("err", e)?;
            LuaValue::Table(t)
        }
        Reply::Array(items) => {
            let t = lua.create_table()?;
            for (i, item) in items.into_iter().enumerate() {
                t.set(i + 1, to_lua(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
    })
}

/// Lua → Redis conversion for script results.
fn from_lua(value: LuaValue) -> Reply {
    match value {
        LuaValue::Nil | LuaValue::Boolean(false) => Reply::Nil,
        LuaValue::Boolean(true) => Reply::Int(1),
        LuaValue::Integer(i) => Reply::Int(i),
        LuaValue::Number(n) => Reply::Int(n as i64),
        LuaValue::String(s) => Reply::Bulk(s.as_bytes().to_vec()),
        LuaValue::Table(t) => {
            if let Ok(LuaValue::String(e)) = t.get::<LuaValue>("err") {
                return Reply::Error(e.to_string_lossy().to_string());
            }
            if let Ok(LuaValue::String(s)) = t.get::<LuaValue>("ok") {
                return Reply::Status(s.to_string_lossy().to_string());
            }
            let mut items = Vec::new();
            for i in 1.. {
                match t.get::<LuaValue>(i) {
                    Ok(LuaValue::Nil) | Err(_) => break,
                    Ok(v) => items.push(from_lua(v)),
                }
            }
            Reply::Array(items)
        }
        _ => Reply::Nil,
    }
}

fn lua_args(args: MultiValue) -> mlua::Result<Vec<Vec<u8>>> {
    args.into_iter()
        .map(|v| match v {
            LuaValue::String(s) => Ok(s.as_bytes().to_vec()),
            LuaValue::Integer(i) => Ok(i.to_string().into_bytes()),
            LuaValue::Number(n) => Ok(if n.fract() == 0.0 && n.abs() < 1e15 {
                format!("{}", n as i64).into_bytes()
            } else {
                format!("{n:.17}").into_bytes()
            }),
            _ => Err(mlua::Error::runtime(
                "Lua redis() command arguments must be strings or integers",
            )),
        })
        .collect()
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
            scripts: BTreeMap::new(),
            channels: BTreeMap::new(),
            clock,
        }));
        let lua = Lua::new();
        Self::install_redis_api(&lua, &db).expect("the redis Lua API installs");
        Self {
            db,
            lua: Rc::new(lua),
            next_conn: Rc::new(Cell::new(1)),
        }
    }

    fn install_redis_api(lua: &Lua, db: &Rc<RefCell<Db>>) -> mlua::Result<()> {
        let redis = lua.create_table()?;
        let call_db = Rc::clone(db);
        redis.set(
            "call",
            lua.create_function(move |lua, args: MultiValue| {
                let args = lua_args(args)?;
                match call_db.borrow_mut().exec(&args) {
                    Reply::Error(e) => Err(mlua::Error::runtime(e)),
                    reply => to_lua(lua, reply),
                }
            })?,
        )?;
        let pcall_db = Rc::clone(db);
        redis.set(
            "pcall",
            lua.create_function(move |lua, args: MultiValue| {
                let args = lua_args(args)?;
                let reply = pcall_db.borrow_mut().exec(&args);
                to_lua(lua, reply)
            })?,
        )?;
        lua.globals().set("redis", redis)?;
        Ok(())
    }

    /// Wipes everything (a crash without persistence).
    pub fn wipe(&self) {
        self.db.borrow_mut().keys.clear();
    }

    fn eval(&self, body: &str, rest: &[Vec<u8>]) -> Reply {
        let Some(numkeys) = rest
            .first()
            .and_then(|n| int_arg(n))
            .and_then(|n| usize::try_from(n).ok())
        else {
            return Reply::err("ERR value is not an integer or out of range");
        };
        if rest.len() < 1 + numkeys {
            return Reply::err("ERR Number of keys can't be greater than number of args");
        }
        let run = || -> mlua::Result<LuaValue> {
            let keys = self.lua.create_table()?;
            for (i, k) in rest[1..=numkeys].iter().enumerate() {
                keys.set(i + 1, self.lua.create_string(k)?)?;
            }
            let argv = self.lua.create_table()?;
            for (i, v) in rest[1 + numkeys..].iter().enumerate() {
                argv.set(i + 1, self.lua.create_string(v)?)?;
            }
            self.lua.globals().set("KEYS", keys)?;
            self.lua.globals().set("ARGV", argv)?;
            self.lua.load(body).eval::<LuaValue>()
        };
        match run() {
            Ok(v) => from_lua(v),
            Err(e) => Reply::Error(format!("ERR Error running script: {e}")),
        }
    }

    /// Runs one command of a connection (everything but (UN)SUBSCRIBE).
    pub fn command(&self, args: &[Vec<u8>]) -> Reply {
        let name = args
            .first()
            .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
            .unwrap_or_default();
        match name.as_str() {
            "EVAL" if args.len() >= 3 => {
                let body = String::from_utf8_lossy(&args[1]).into_owned();
                let sha = sha1_smol::Sha1::from(body.as_bytes()).digest().to_string();
                self.db.borrow_mut().scripts.insert(sha, body.clone());
                self.eval(&body, &args[2..])
            }
            "EVALSHA" if args.len() >= 3 => {
                let sha = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
                let body = self.db.borrow().scripts.get(&sha).cloned();
                match body {
                    Some(body) => self.eval(&body, &args[2..]),
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
        let mut framed = Framed::new(io, Resp2::default());
        let (push_tx, mut push_rx) = mpsc::unbounded_channel::<Reply>();
        let mut subscribed: BTreeSet<Vec<u8>> = BTreeSet::new();
        loop {
            tokio::select! {
                biased;
                push = push_rx.recv() => {
                    let Some(push) = push else { break };
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
                    let replies = self.dispatch(id, &args, &mut subscribed, &push_tx);
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
            // In subscribe mode, PING answers as a push: ["pong", message].
            "PING" if !subscribed.is_empty() => vec![Reply::Array(vec![
                Reply::Bulk(b"pong".to_vec()),
                Reply::Bulk(args.get(1).cloned().unwrap_or_default()),
            ])],
            _ => vec![self.command(args)],
        }
    }
}
