//! Sorted sets: ZADD, ZREM, ZRANGE/ZRANGEBYSCORE (BYSCORE, LIMIT, WITHSCORES as afw sends them).
//!
//! Each command as `redis-server` answers it (held to it by `tests/conformance`); nothing
//! here may block, await or reach another data type's representation.

use std::collections::BTreeMap;

use super::{Db, Reply, Value, float_arg, format_score, int_arg, range, wrong_args};

pub(super) fn exec(db: &mut Db, name: &str, a: &[Vec<u8>]) -> Reply {
    let arity = |n: usize| a.len() >= n;
    match name {
        "ZADD" if a.len() >= 3 && a.len() % 2 == 1 => {
            let mut pairs = Vec::new();
            for pair in a[1..].chunks(2) {
                let Some(score) = float_arg(&pair[0]) else {
                    return Reply::err("ERR value is not a valid float");
                };
                pairs.push((score, pair[1].clone()));
            }
            let Some(Value::ZSet(z)) = db.entry_for(&a[0], || Value::ZSet(BTreeMap::new())) else {
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
            let reply = match db.live(&a[0]).map(|e| &mut e.value) {
                None => Reply::Int(0),
                Some(Value::ZSet(z)) => {
                    Reply::Int(a[1..].iter().filter(|m| z.remove(*m).is_some()).count() as i64)
                }
                Some(_) => Reply::wrong_type(),
            };
            db.drop_if_empty(&a[0]);
            reply
        }
        "ZRANGE" | "ZRANGEBYSCORE" if arity(3) => {
            let by_score = name == "ZRANGEBYSCORE";
            let with_scores = a
                .get(3)
                .is_some_and(|o| o.eq_ignore_ascii_case(b"WITHSCORES"));
            let sorted: Vec<(f64, Vec<u8>)> = match db.live(&a[0]).map(|e| &e.value) {
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
        _ => wrong_args(name),
    }
}
