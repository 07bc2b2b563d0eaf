//! Every Redis key of afw, spelled once.
//!
//! Keys are `{prefix}{kind}{id}` (contract §4). [`KINDS`] is the one table of kinds: Rust
//! builds keys through [`Keys`], and the Lua scripts get the same table as their preamble
//! ([`lua_preamble`], `K.sessions`, `K.events`, ...), so the two cannot drift apart. This
//! module only names keys; it never talks to Redis.

/// `(Lua name, kind)`: the key kinds, with the Redis type and TTL the README's key layout
/// table gives for each.
pub(crate) const KINDS: &[(&str, &str)] = &[
    ("sessions", "sessions:"),     // STRING, the session JSON, session TTL
    ("events", "events:"),         // LIST of event JSON, session TTL
    ("seq", "seq:"),               // STRING, the last seq, session TTL
    ("bytes", "bytes:"),           // STRING, the event list's size in bytes, session TTL
    ("eventids", "eventids:"),     // ZSET, the stored events' eventIds by seq, session TTL
    ("epoch", "epoch:"),           // STRING, the session's incarnation, session TTL
    ("chains", "chains:"),         // LIST of chain ids, session TTL
    ("chain", "chain:"),           // STRING, one chain's JSON, session TTL
    ("commands", "commands:"),     // LIST, the pending command queue, queue TTL
    ("command", "command:"),       // HASH, one command record, queue TTL
    ("cmdids", "cmdids:"),         // SET, every command id of a session, queue TTL
    ("leases", "leases:"),         // ZSET, leased commands by lease end, queue TTL
    ("input", "input:"),           // LIST, the input queue, queue TTL
    ("inputkeys", "inputkeys:"),   // ZSET, client keys of queued input by time, queue TTL
    ("index", "index:sessions"),   // ZSET, session ids by last activity, session TTL
    ("bystatus", "index:status:"), // ZSET per status, session ids by last activity, session TTL
    ("byuser", "index:user:"),     // ZSET per user, session ids by last activity, session TTL
    ("users", "index:users"),      // ZSET, users by their last activity, session TTL
    ("meta", "meta:"), // HASH, a session's `status` and `user` (its indexes), session TTL
    ("health", "health:"), // STRING, written by /health, 10 s
    ("due", "archive:due"), // ZSET, sessions due for archival by when marked, session TTL
    ("lease", "lease:"), // STRING, a lease's holder (instance id), the lease's term
];

fn kind(name: &str) -> &'static str {
    KINDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
        .unwrap_or_default()
}

/// `local K = {sessions = 'sessions:', ...}`, the first lines of every script.
pub(crate) fn lua_preamble() -> String {
    let mut out = String::from("local K = {");
    for (name, kind) in KINDS {
        out.push_str(&format!("{name} = '{kind}', "));
    }
    out.push_str("}\n");
    out
}

/// The keys of one deployment (one prefix).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, name: &str, id: &str) -> String {
        format!("{}{}{id}", self.prefix, kind(name))
    }

    pub(crate) fn session(&self, id: &str) -> String {
        self.key("sessions", id)
    }

    pub(crate) fn chain(&self, id: &str) -> String {
        self.key("chain", id)
    }

    pub(crate) fn command(&self, id: &str) -> String {
        self.key("command", id)
    }

    pub(crate) fn index(&self) -> String {
        self.key("index", "")
    }

    /// The sessions of one status, by last activity.
    pub(crate) fn by_status(&self, status: &str) -> String {
        self.key("bystatus", status)
    }

    /// The sessions of one user, by last activity.
    pub(crate) fn by_user(&self, user: &str) -> String {
        self.key("byuser", user)
    }

    /// Users by their last activity.
    pub(crate) fn users(&self) -> String {
        self.key("users", "")
    }

    /// Sessions due for archival, by when they were marked.
    pub(crate) fn archive_due(&self) -> String {
        self.key("due", "")
    }

    pub(crate) fn health(&self, instance: &str) -> String {
        self.key("health", instance)
    }

    /// The Pub/Sub channel (not a key, but under the same prefix).
    pub(crate) fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_and_lua_spell_every_key_the_same() {
        let keys = Keys::new("afw:");
        assert_eq!(keys.session("s1"), "afw:sessions:s1");
        assert_eq!(keys.chain("c1"), "afw:chain:c1");
        assert_eq!(keys.command("cmd-1"), "afw:command:cmd-1");
        assert_eq!(keys.index(), "afw:index:sessions");
        assert_eq!(keys.health("i1"), "afw:health:i1");
        assert_eq!(keys.channel(), "afw:events");
        let preamble = lua_preamble();
        for (name, kind) in KINDS {
            assert!(
                preamble.contains(&format!("{name} = '{kind}'")),
                "{preamble}"
            );
        }
        // Every `K.<name>` a script uses is in the table, and no script spells a key itself.
        for script in [
            crate::storage::redis::scripts::commit(),
            crate::storage::redis::scripts::load(),
            crate::storage::redis::scripts::read(),
            crate::storage::redis::scripts::push_input(),
            crate::storage::redis::scripts::push_command(),
            crate::storage::redis::scripts::claim(),
            crate::storage::redis::scripts::ack(),
            crate::storage::redis::scripts::delete(),
            crate::storage::redis::scripts::user_sessions(),
            crate::storage::redis::scripts::archive_mark(),
            crate::storage::redis::scripts::take_lease(),
            crate::storage::redis::scripts::archive_filed(),
        ] {
            let body = &script[preamble.len()..];
            for used in body.split("K.").skip(1) {
                let name: String = used
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                assert!(
                    KINDS.iter().any(|(n, _)| *n == name),
                    "K.{name} is not a key kind"
                );
            }
            for (_, kind) in KINDS {
                assert!(
                    !body.contains(&format!("'{kind}'")),
                    "a script spells {kind} itself"
                );
            }
        }
    }
}
