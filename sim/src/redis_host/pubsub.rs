//! PUBLISH; SUBSCRIBE and UNSUBSCRIBE live with the connection ([`super::RedisHost::serve`]).
//!
//! Each command as `redis-server` answers it (held to it by `tests/conformance`); nothing
//! here may block, await or reach another data type's representation.

use super::{Db, Reply, wrong_args};

pub(super) fn exec(db: &mut Db, name: &str, a: &[Vec<u8>]) -> Reply {
    let arity = |n: usize| a.len() >= n;
    match name {
        "PUBLISH" if arity(2) => Reply::Int(db.publish(&a[0], &a[1])),
        _ => wrong_args(name),
    }
}

impl Db {
    pub(super) fn publish(&mut self, channel: &[u8], message: &[u8]) -> i64 {
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
}
