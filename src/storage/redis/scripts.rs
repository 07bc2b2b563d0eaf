//! The Lua scripts of the Redis backend. Each is one atomic round trip.
//!
//! None of them edits JSON: the session and chains are derived in Rust
//! ([`crate::domain::derive`]) and written whole by `COMMIT`, which first compares the stored
//! session with the one the derivation started from (a compare-and-set). Every event bumps
//! the session's `eventCount`, so any concurrent change is detected and the caller reloads
//! and derives again. Keys are built from a prefix and a session id passed as arguments
//! (single Redis, not Cluster). The bodies are Lua files beside this one (`scripts/*.lua`),
//! so they read, diff and lint as Lua; each is prefixed with the key table at build time.

use crate::domain::model::CommandStatus;

/// Refreshes every key of a session together: session, events, seq and chains get the
/// session TTL; queues and command records get the queue TTL.
const TOUCH: &str = include_str!("scripts/touch.lua");

/// ARGV: prefix, sid, ttl, qttl, channel, expected session ('' = absent), new session,
/// activity score, new last seq ('' = unchanged), max events, pop ('1' = pop one input item
/// first; nothing is written if there is none), byte budget of the events, the epoch to
/// store ('' = keep: only the commit that creates the session writes it), then `n`
/// (event, eventId or '') pairs, `n` (chain id, json, new) triples, `n` messages to publish,
/// then the session's status and user before ('' when new) and after: the listing indexes
/// (by status, by user, the users) follow them, and `meta:{sid}` keeps them for DELETE.
/// An event whose eventId `eventids:{sid}` already holds makes the script write nothing and
/// return `{3, {id, seq, ...}}` (the caller derives again without them); new ids are added
/// with their seq, and trimmed events' ids go with them.
/// The oldest events go first, by count and by bytes (`bytes:{sid}` keeps the list's
/// size); the newest event always stays, so seqs stay contiguous.
/// Returns `{0}` when the session changed (reload), `{2}` when a pop found nothing,
/// `{1, item}` on success.
const COMMIT_BODY: &str = include_str!("scripts/commit.lua");

/// ARGV: prefix, sid. Returns `{session or false, chain json...}`.
const LOAD_BODY: &str = include_str!("scripts/load.lua");

/// ARGV: prefix, sid, after (-1 = none), limit (-1 = all), newest ('1').
/// Events are contiguous by seq (only the oldest are trimmed), so positions follow from the
/// last seq and the list length without parsing anything.
/// Returns `{last seq, list length, epoch or false, events...}`.
const READ_BODY: &str = include_str!("scripts/read.lua");

/// ARGV: prefix, sid, ttl, qttl, cap, item, channel, the `input:queued` message as the
/// text before and after its queue length, the client key ('' = none), now, the most keys
/// kept. Publishes the message with the new length. Returns `{length}`, `{-1}` without the
/// session, `{-2}` when full, `{-3, length}` when the key was queued before (nothing is).
const PUSH_INPUT_BODY: &str = include_str!("scripts/push_input.lua");

/// ARGV: prefix, sid, ttl, qttl, command id, record json, cap, records, channel, the
/// `command:queued` message (published once queued). Returns `{-3, record fields}` when the
/// session already holds the command id (a retry: nothing is queued), `{-4}` when another
/// session does, `{1}` once queued; otherwise `{code}`: 0 without
/// the session, -2 when `cap` commands are pending. Past `records` command records, the
/// oldest claimed or finished ones (ids start with their issue time) are dropped down to
/// nine tenths of it, so the set a session's every write refreshes stays bounded.
const PUSH_COMMAND_BODY: &str = include_str!("scripts/push_command.lua");

/// ARGV: prefix, sid, ttl, qttl, now, lease ms (0 = none). Claims every pending command
/// and every leased one whose lease ran out. Returns the claimed records' json.
const CLAIM_BODY: &str = include_str!("scripts/claim.lua");

/// ARGV: prefix, command id, now, status, result ('' = none), error ('' = none), qttl.
/// Returns the record's fields, or nil for an unknown command.
const ACK_BODY: &str = include_str!("scripts/ack.lua");

/// ARGV: prefix, sid, channel, the `session:deleted` message. Removes every key of the
/// session and publishes the message if it existed. Returns 1 if it existed.
const DELETE_BODY: &str = include_str!("scripts/delete.lua");

/// ARGV: prefix, sid, now, session ttl, most due. Marks the session due for archival at
/// `now` (the due set lives as long as a session). Returns 0 when the set is full (the
/// session is not in it), else 1.
const ARCHIVE_MARK_BODY: &str = include_str!("scripts/archive_mark.lua");

/// ARGV: prefix, lease name, holder, ttl ms. Takes the lease when it is free or `holder`'s
/// (renewing it). Returns -1 when `holder` holds it now, else the ms the other holder's
/// lease still runs.
const TAKE_LEASE_BODY: &str = include_str!("scripts/take_lease.lua");

/// ARGV: prefix, sid, read at (ms), lease name, holder. Clears the session's due mark
/// unless it is newer than `read at`, and deletes the lease if `holder` holds it.
const ARCHIVE_FILED_BODY: &str = include_str!("scripts/archive_filed.lua");

/// Every script starts with the key table ([`super::keys::lua_preamble`]), so a key is
/// spelled once in Rust and once, generated from it, in Lua.
fn script(parts: &[&str]) -> String {
    let mut out = super::keys::lua_preamble();
    out.push_str(&status_preamble());
    for part in parts {
        out.push_str(part);
    }
    out
}

/// `local S = {pending = 'pending', ...}`: command statuses, spelled by [`CommandStatus`].
fn status_preamble() -> String {
    let names: Vec<String> = CommandStatus::ALL
        .iter()
        .map(|s| format!("{0} = '{0}'", s.as_str()))
        .collect();
    format!("local S = {{{}}}\n", names.join(", "))
}

pub(super) fn commit() -> String {
    script(&[TOUCH, COMMIT_BODY])
}

pub(super) fn load() -> String {
    script(&[LOAD_BODY])
}

pub(super) fn read() -> String {
    script(&[READ_BODY])
}

pub(super) fn push_input() -> String {
    script(&[TOUCH, PUSH_INPUT_BODY])
}

pub(super) fn push_command() -> String {
    script(&[TOUCH, PUSH_COMMAND_BODY])
}

pub(super) fn claim() -> String {
    script(&[TOUCH, CLAIM_BODY])
}

pub(super) fn ack() -> String {
    script(&[ACK_BODY])
}

pub(super) fn delete() -> String {
    script(&[DELETE_BODY])
}

pub(super) fn archive_mark() -> String {
    script(&[ARCHIVE_MARK_BODY])
}

pub(super) fn take_lease() -> String {
    script(&[TAKE_LEASE_BODY])
}

pub(super) fn archive_filed() -> String {
    script(&[ARCHIVE_FILED_BODY])
}

/// ARGV: prefix, per user, users... For each user, `{session count, {newest session ids, at
/// most per user}}`: one page of users is one round trip, whatever the page's size.
const USER_SESSIONS_BODY: &str = include_str!("scripts/user_sessions.lua");

pub(super) fn user_sessions() -> String {
    script(&[USER_SESSIONS_BODY])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_spell_statuses_and_keys_only_through_their_tables() {
        let all = [
            commit(),
            load(),
            read(),
            push_input(),
            push_command(),
            claim(),
            ack(),
            delete(),
            archive_mark(),
            take_lease(),
            archive_filed(),
        ];
        for script in &all {
            assert!(script.contains("local S = {pending = 'pending', delivered = 'delivered'"));
            let body = script
                .split_once("\n")
                .unwrap()
                .1
                .split_once("\n")
                .unwrap()
                .1;
            for status in CommandStatus::ALL {
                assert!(
                    !body.contains(&format!("'{}'", status.as_str())),
                    "{status:?}"
                );
            }
            for (_, kind) in super::super::keys::KINDS {
                assert!(!body.contains(&format!("'{kind}")), "{kind} spelled in Lua");
            }
        }
    }
}
