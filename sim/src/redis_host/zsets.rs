//! Sorted sets: ZADD, ZREM, ZSCORE, ZCARD, ZREMRANGEBYSCORE, ZREMRANGEBYRANK, ZRANGE (by rank, or `BYSCORE`
//! with `REV` and `LIMIT`) and ZRANGEBYSCORE, with WITHSCORES, as afw sends them.
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
        "ZSCORE" if a.len() == 2 => match db.live(&a[0]).map(|e| &e.value) {
            None => Reply::Nil,
            Some(Value::ZSet(z)) => z
                .get(&a[1])
                .map_or(Reply::Nil, |s| Reply::Bulk(format_score(*s))),
            Some(_) => Reply::wrong_type(),
        },
        "ZCARD" if a.len() == 1 => match db.live(&a[0]).map(|e| &e.value) {
            None => Reply::Int(0),
            Some(Value::ZSet(z)) => Reply::Int(z.len() as i64),
            Some(_) => Reply::wrong_type(),
        },
        "ZREMRANGEBYSCORE" if a.len() == 3 => {
            let (Some(min), Some(max)) = (Bound::parse(&a[1]), Bound::parse(&a[2])) else {
                return Reply::err("ERR min or max is not a float");
            };
            let reply = match db.live(&a[0]).map(|e| &mut e.value) {
                None => Reply::Int(0),
                Some(Value::ZSet(z)) => {
                    let before = z.len();
                    z.retain(|_, s| !(min.below(*s) && max.above(*s)));
                    Reply::Int((before - z.len()) as i64)
                }
                Some(_) => Reply::wrong_type(),
            };
            db.drop_if_empty(&a[0]);
            reply
        }
        "ZREMRANGEBYRANK" if a.len() == 3 => {
            let (Some(start), Some(stop)) = (int_arg(&a[1]), int_arg(&a[2])) else {
                return Reply::not_int();
            };
            let reply = match db.live(&a[0]).map(|e| &mut e.value) {
                None => Reply::Int(0),
                Some(Value::ZSet(z)) => {
                    let mut sorted: Vec<(f64, Vec<u8>)> =
                        z.iter().map(|(m, s)| (*s, m.clone())).collect();
                    sorted.sort_by(|x, y| x.0.total_cmp(&y.0).then_with(|| x.1.cmp(&y.1)));
                    match range(sorted.len(), start, stop) {
                        Some((from, to)) => {
                            for (_, m) in &sorted[from..=to] {
                                z.remove(m);
                            }
                            Reply::Int((to - from + 1) as i64)
                        }
                        None => Reply::Int(0),
                    }
                }
                Some(_) => Reply::wrong_type(),
            };
            db.drop_if_empty(&a[0]);
            reply
        }
        "ZRANGE" if a.len() >= 3 && a[3..].iter().any(|o| o.eq_ignore_ascii_case(b"BYSCORE")) => {
            by_score_range(db, a)
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
            scored_reply(picked, with_scores)
        }
        _ => wrong_args(name),
    }
}

/// One end of a score range: `-inf`, `+inf`, `5` (inclusive) or `(5` (exclusive).
#[derive(Clone, Copy)]
struct Bound {
    score: f64,
    exclusive: bool,
}

impl Bound {
    fn parse(arg: &[u8]) -> Option<Self> {
        match arg.strip_prefix(b"(") {
            Some(rest) => float_arg(rest).map(|score| Self {
                score,
                exclusive: true,
            }),
            None => float_arg(arg).map(|score| Self {
                score,
                exclusive: false,
            }),
        }
    }

    /// `score` is at or past this bound as a minimum.
    fn below(self, score: f64) -> bool {
        if self.exclusive {
            score > self.score
        } else {
            score >= self.score
        }
    }

    /// `score` is at or before this bound as a maximum.
    fn above(self, score: f64) -> bool {
        if self.exclusive {
            score < self.score
        } else {
            score <= self.score
        }
    }
}

/// `ZRANGE key start stop BYSCORE [REV] [LIMIT offset count] [WITHSCORES]`: with `REV`, `start`
/// is the maximum and the highest scores come first (ties by member, descending).
fn by_score_range(db: &mut Db, a: &[Vec<u8>]) -> Reply {
    let opts = &a[3..];
    let has = |o: &[u8]| opts.iter().any(|x| x.eq_ignore_ascii_case(o));
    let rev = has(b"REV");
    let with_scores = has(b"WITHSCORES");
    let limit = match opts.iter().position(|x| x.eq_ignore_ascii_case(b"LIMIT")) {
        None => None,
        Some(i) => match (
            opts.get(i + 1).and_then(|v| int_arg(v)),
            opts.get(i + 2).and_then(|v| int_arg(v)),
        ) {
            (Some(off), Some(count)) => Some((off, count)),
            _ => return Reply::not_int(),
        },
    };
    let (lo, hi) = if rev { (&a[2], &a[1]) } else { (&a[1], &a[2]) };
    let (Some(min), Some(max)) = (Bound::parse(lo), Bound::parse(hi)) else {
        return Reply::err("ERR min or max is not a float");
    };
    let mut picked: Vec<(f64, Vec<u8>)> = match db.live(&a[0]).map(|e| &e.value) {
        None => vec![],
        Some(Value::ZSet(z)) => z
            .iter()
            .filter(|(_, s)| min.below(**s) && max.above(**s))
            .map(|(m, s)| (*s, m.clone()))
            .collect(),
        Some(_) => return Reply::wrong_type(),
    };
    picked.sort_by(|x, y| x.0.total_cmp(&y.0).then_with(|| x.1.cmp(&y.1)));
    if rev {
        picked.reverse();
    }
    if let Some((off, count)) = limit {
        let off = usize::try_from(off).unwrap_or(usize::MAX);
        picked = picked.into_iter().skip(off).collect();
        if let Ok(count) = usize::try_from(count) {
            picked.truncate(count);
        }
    }
    scored_reply(picked, with_scores)
}

/// Members in order, each followed by its score `WITHSCORES`.
fn scored_reply(picked: Vec<(f64, Vec<u8>)>, with_scores: bool) -> Reply {
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
