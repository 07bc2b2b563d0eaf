//! Lists: RPUSH/LPUSH, LPOP, LLEN, LINDEX, LRANGE, LTRIM.
//!
//! Each command as `redis-server` answers it (held to it by `tests/conformance`); nothing
//! here may block, await or reach another data type's representation.

use std::collections::VecDeque;

use super::{Db, Reply, Value, int_arg, range, wrong_args};

// A command table: one arm per command, each as `redis-server` answers it; longer
// than most functions because the commands are many, not because one is.
pub(super) fn exec(db: &mut Db, name: &str, a: &[Vec<u8>]) -> Reply {
    let arity = |n: usize| a.len() >= n;
    match name {
        "RPUSH" | "LPUSH" if arity(2) => {
            let Some(Value::List(list)) = db.entry_for(&a[0], || Value::List(VecDeque::new()))
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
            let reply = match db.live(&a[0]).map(|e| &mut e.value) {
                None => Reply::Nil,
                Some(Value::List(l)) => l.pop_front().map_or(Reply::Nil, Reply::Bulk),
                Some(_) => Reply::wrong_type(),
            };
            db.drop_if_empty(&a[0]);
            reply
        }
        "LLEN" if arity(1) => match db.live(&a[0]).map(|e| &e.value) {
            None => Reply::Int(0),
            Some(Value::List(l)) => Reply::Int(l.len() as i64),
            Some(_) => Reply::wrong_type(),
        },
        "LINDEX" if arity(2) => {
            let Some(i) = int_arg(&a[1]) else {
                return Reply::not_int();
            };
            match db.live(&a[0]).map(|e| &e.value) {
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
            match db.live(&a[0]).map(|e| &e.value) {
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
            match db.live(&a[0]).map(|e| &mut e.value) {
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
            db.drop_if_empty(&a[0]);
            Reply::ok()
        }
        _ => wrong_args(name),
    }
}
