//! Commands on any key and on the server: PING, SELECT/AUTH/CLIENT (accepted), FLUSHALL,
//! DBSIZE, DEL, EXISTS, TYPE, (P)EXPIRE, (P)TTL.
//!
//! Each command as `redis-server` answers it (held to it by `tests/conformance`); nothing
//! here may block, await or reach another data type's representation.

use std::time::Duration;

use super::{Db, Reply, Value, int_arg, wrong_args};

pub(super) fn exec(db: &mut Db, name: &str, a: &[Vec<u8>]) -> Reply {
    let arity = |n: usize| a.len() >= n;
    match name {
        "PING" => match a.first() {
            Some(m) => Reply::Bulk(m.clone()),
            None => Reply::Status("PONG".into()),
        },
        "SELECT" | "AUTH" => Reply::ok(),
        "CLIENT" => Reply::ok(),
        "FLUSHALL" | "FLUSHDB" => {
            db.keys.clear();
            Reply::ok()
        }
        "DBSIZE" => {
            let now = db.now();
            db.keys.retain(|_, e| e.expires.is_none_or(|at| at > now));
            Reply::Int(db.keys.len() as i64)
        }
        "DEL" if arity(1) => {
            let mut n = 0;
            for k in a {
                if db.live(k).is_some() {
                    db.keys.remove(k);
                    n += 1;
                }
            }
            Reply::Int(n)
        }
        "EXISTS" if arity(1) => Reply::Int(a.iter().filter(|k| db.exists(k)).count() as i64),
        "TYPE" if arity(1) => Reply::Status(
            match db.live(&a[0]).map(|e| &e.value) {
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
            let at = db.now() + Duration::from_millis(ms.max(0) as u64);
            match db.live(&a[0]) {
                None => Reply::Int(0),
                Some(_) if ms <= 0 => {
                    db.keys.remove(&a[0]);
                    Reply::Int(1)
                }
                Some(e) => {
                    e.expires = Some(at);
                    Reply::Int(1)
                }
            }
        }
        "PTTL" | "TTL" if arity(1) => match db.live(&a[0]).map(|e| e.expires) {
            None => Reply::Int(-2),
            Some(None) => Reply::Int(-1),
            Some(Some(at)) => {
                let left = at.saturating_sub(db.now()).as_millis() as i64;
                Reply::Int(if name == "TTL" {
                    (left + 500) / 1000
                } else {
                    left
                })
            }
        },
        _ => wrong_args(name),
    }
}
