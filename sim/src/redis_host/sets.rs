//! Sets: SADD, SCARD, SREM, SMEMBERS.
//!
//! Each command as `redis-server` answers it (held to it by `tests/conformance`); nothing
//! here may block, await or reach another data type's representation.

use std::collections::BTreeSet;

use super::{Db, Reply, Value, wrong_args};

pub(super) fn exec(db: &mut Db, name: &str, a: &[Vec<u8>]) -> Reply {
    let arity = |n: usize| a.len() >= n;
    match name {
        "SADD" if arity(2) => {
            let Some(Value::Set(set)) = db.entry_for(&a[0], || Value::Set(BTreeSet::new())) else {
                return Reply::wrong_type();
            };
            Reply::Int(a[1..].iter().filter(|m| set.insert((*m).clone())).count() as i64)
        }
        "SCARD" if arity(1) => match db.live(&a[0]).map(|e| &e.value) {
            None => Reply::Int(0),
            Some(Value::Set(s)) => Reply::Int(s.len() as i64),
            Some(_) => Reply::wrong_type(),
        },
        "SREM" if arity(2) => {
            let reply = match db.live(&a[0]).map(|e| &mut e.value) {
                None => Reply::Int(0),
                Some(Value::Set(set)) => {
                    Reply::Int(a[1..].iter().filter(|m| set.remove(*m)).count() as i64)
                }
                Some(_) => Reply::wrong_type(),
            };
            db.drop_if_empty(&a[0]);
            reply
        }
        "SMEMBERS" if arity(1) => match db.live(&a[0]).map(|e| &e.value) {
            None => Reply::Array(vec![]),
            Some(Value::Set(s)) => Reply::Array(s.iter().map(|m| Reply::Bulk(m.clone())).collect()),
            Some(_) => Reply::wrong_type(),
        },
        _ => wrong_args(name),
    }
}
