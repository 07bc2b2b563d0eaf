//! `maxmemory` with the `noeviction` policy: over the limit, the commands Redis flags
//! `denyoom` answer `OOM`, everything else (reads, deletes, pops, expiries, `PUBLISH`)
//! still runs. In a script (no shebang flags, as afw's are) a `denyoom` call fails only
//! until the script has written something: Redis never fails a script half-way through its
//! writes. `CONFIG SET/GET maxmemory` set and read the limit.
//!
//! Memory use is not measured: it is taken as a fixed baseline plus a little per key, so
//! only a limit far below any real use (the simulation's fault sets 1 byte) behaves as in
//! Redis. Nothing here may evict.

use super::{Db, Reply, int_arg, wrong_args};

/// What an empty `redis-server` reports as `used_memory`, roughly.
const BASELINE_BYTES: u64 = 1 << 20;
const PER_KEY_BYTES: u64 = 64;

/// The commands afw sends that Redis flags `denyoom`.
const DENYOOM: [&str; 7] = ["SET", "INCRBY", "RPUSH", "LPUSH", "HSET", "SADD", "ZADD"];

/// The commands afw sends that Redis flags `write` (a script that ran one is "dirty").
const WRITES: [&str; 16] = [
    "SET", "INCRBY", "RPUSH", "LPUSH", "LPOP", "LTRIM", "HSET", "HDEL", "SADD", "SREM", "ZADD",
    "ZREM", "DEL", "PEXPIRE", "EXPIRE", "FLUSHALL",
];

pub(super) const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

impl Db {
    /// The estimate `INFO` reports as `used_memory`.
    pub(super) fn used_memory(&self) -> u64 {
        BASELINE_BYTES + PER_KEY_BYTES * self.keys.len() as u64
    }

    fn over_limit(&self) -> bool {
        self.maxmemory > 0 && self.used_memory() > self.maxmemory
    }

    /// The `OOM` refusal for `name`, if it gets one now; else notes a script's write.
    pub(super) fn admit(&mut self, name: &str) -> Option<Reply> {
        let dirty = self.script_dirty == Some(true);
        if DENYOOM.contains(&name) && !dirty && self.over_limit() {
            return Some(Reply::err(OOM));
        }
        if WRITES.contains(&name) && self.script_dirty.is_some() {
            self.script_dirty = Some(true);
        }
        None
    }
}

/// `CONFIG SET maxmemory <bytes>` and `CONFIG GET maxmemory`.
pub(super) fn config(db: &mut Db, a: &[Vec<u8>]) -> Reply {
    let sub = a.first().map(|s| s.to_ascii_uppercase());
    let param = a.get(1).map(|p| p.to_ascii_lowercase());
    match (sub.as_deref(), param.as_deref(), a.get(2)) {
        (Some(b"SET"), Some(b"maxmemory"), Some(v)) if a.len() == 3 => {
            match int_arg(v).and_then(|n| u64::try_from(n).ok()) {
                Some(n) => {
                    db.maxmemory = n;
                    Reply::ok()
                }
                None => Reply::err(
                    "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument couldn't be parsed into an integer",
                ),
            }
        }
        (Some(b"GET"), Some(b"maxmemory"), None) => Reply::Array(vec![
            Reply::Bulk(b"maxmemory".to_vec()),
            Reply::Bulk(db.maxmemory.to_string().into_bytes()),
        ]),
        _ => wrong_args("config"),
    }
}
