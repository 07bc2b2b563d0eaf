//! Strings: GET, MGET, SET (PX/EX, NX), INCRBY.
//!
//! Each command as `redis-server` answers it (held to it by `tests/conformance`); nothing
//! here may block, await or reach another data type's representation.

use std::time::Duration;

use super::{Db, Entry, Reply, Value, int_arg, wrong_args};

// A command table: one arm per command, each as `redis-server` answers it; longer
// than most functions because the commands are many, not because one is.
pub(super) fn exec(db: &mut Db, name: &str, a: &[Vec<u8>]) -> Reply {
    let arity = |n: usize| a.len() >= n;
    match name {
        "GET" if arity(1) => match db.live(&a[0]).map(|e| &e.value) {
            None => Reply::Nil,
            Some(Value::Str(s)) => Reply::Bulk(s.clone()),
            Some(_) => Reply::wrong_type(),
        },
        "MGET" if arity(1) => Reply::Array(
            a.iter()
                .map(|k| match db.live(k).map(|e| &e.value) {
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
                        expires = Some(db.now() + Duration::from_millis(n as u64 * unit));
                        i += 2;
                    }
                    "NX" => {
                        nx = true;
                        i += 1;
                    }
                    _ => return Reply::syntax(),
                }
            }
            if nx && db.exists(&a[0]) {
                return Reply::Nil;
            }
            db.keys.insert(
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
            let current = match db.live(&a[0]).map(|e| &e.value) {
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
            let expires = db.live(&a[0]).and_then(|e| e.expires);
            db.keys.insert(
                a[0].clone(),
                Entry {
                    value: Value::Str(next.to_string().into_bytes()),
                    expires,
                },
            );
            Reply::Int(next)
        }
        _ => wrong_args(name),
    }
}
