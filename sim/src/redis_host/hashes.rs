//! Hashes: HSET, HGET, HDEL, HGETALL.
//!
//! Each command as `redis-server` answers it (held to it by `tests/conformance`); nothing
//! here may block, await or reach another data type's representation.

use std::collections::BTreeMap;

use super::{Db, Reply, Value, wrong_args};

pub(super) fn exec(db: &mut Db, name: &str, a: &[Vec<u8>]) -> Reply {
    let arity = |n: usize| a.len() >= n;
    match name {
        "HSET" if a.len() >= 3 && a.len() % 2 == 1 => {
            let Some(Value::Hash(h)) = db.entry_for(&a[0], || Value::Hash(BTreeMap::new())) else {
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
        "HGET" if arity(2) => match db.live(&a[0]).map(|e| &e.value) {
            None => Reply::Nil,
            Some(Value::Hash(h)) => h.get(&a[1]).map_or(Reply::Nil, |v| Reply::Bulk(v.clone())),
            Some(_) => Reply::wrong_type(),
        },
        "HDEL" if arity(2) => {
            let reply = match db.live(&a[0]).map(|e| &mut e.value) {
                None => Reply::Int(0),
                Some(Value::Hash(h)) => {
                    Reply::Int(a[1..].iter().filter(|f| h.remove(*f).is_some()).count() as i64)
                }
                Some(_) => Reply::wrong_type(),
            };
            db.drop_if_empty(&a[0]);
            reply
        }
        "HGETALL" if arity(1) => match db.live(&a[0]).map(|e| &e.value) {
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
        _ => wrong_args(name),
    }
}
