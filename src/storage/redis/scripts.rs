//! The Lua scripts of the Redis backend. Each is one atomic round trip.
//!
//! None of them edits JSON: the session and chains are derived in Rust
//! ([`crate::domain::derive`]) and written whole by `COMMIT`, which first compares the stored
//! session with the one the derivation started from (a compare-and-set). Every event bumps
//! the session's `eventCount`, so any concurrent change is detected and the caller reloads
//! and derives again. Keys are built from a prefix and a session id passed as arguments
//! (single Redis, not Cluster).

/// Refreshes every key of a session together: session, events, seq and chains get the
/// session TTL; queues and command records get the queue TTL.
const TOUCH: &str = r"
local function touch(p, sid, ttl, qttl)
  for _, k in ipairs({K.sessions, K.events, K.seq, K.chains, K.bytes}) do
    redis.call('PEXPIRE', p .. k .. sid, ttl)
  end
  for _, cid in ipairs(redis.call('LRANGE', p .. K.chains .. sid, 0, -1)) do
    redis.call('PEXPIRE', p .. K.chain .. cid, ttl)
  end
  for _, k in ipairs({K.commands, K.input, K.leases, K.cmdids}) do
    redis.call('PEXPIRE', p .. k .. sid, qttl)
  end
  for _, id in ipairs(redis.call('SMEMBERS', p .. K.cmdids .. sid)) do
    redis.call('PEXPIRE', p .. K.command .. id, qttl)
  end
end
";

/// ARGV: prefix, sid, ttl, qttl, channel, expected session ('' = absent), new session,
/// activity score, new last seq ('' = unchanged), max events, pop ('1' = pop one input item
/// first; nothing is written if there is none), byte budget of the events, then `n` events,
/// `n` (chain id, json, new) triples, `n` messages to publish.
/// The oldest events go first, by count and by bytes (`bytes:{sid}` keeps the list's
/// size); the newest event always stays, so seqs stay contiguous.
/// Returns `{0}` when the session changed (reload), `{2}` when a pop found nothing,
/// `{1, item}` on success.
const COMMIT_BODY: &str = r"
local p, sid = ARGV[1], ARGV[2]
local skey = p .. K.sessions .. sid
local cur = redis.call('GET', skey)
if (cur or '') ~= ARGV[6] then return {0} end
local item = false
if ARGV[11] == '1' then
  item = redis.call('LPOP', p .. K.input .. sid)
  if not item then return {2} end
end
redis.call('SET', skey, ARGV[7])
if ARGV[9] ~= '' then redis.call('SET', p .. K.seq .. sid, ARGV[9]) end
local i = 13
local n = tonumber(ARGV[i]); i = i + 1
local ekey = p .. K.events .. sid
if n > 0 then
  local len, added = 0, 0
  for _ = 1, n do
    len = redis.call('RPUSH', ekey, ARGV[i]); added = added + #ARGV[i]; i = i + 1
  end
  local bkey = p .. K.bytes .. sid
  local bytes = redis.call('INCRBY', bkey, added)
  local cap, budget = tonumber(ARGV[10]), tonumber(ARGV[12])
  local removed = 0
  while len > 1 and (len > cap or bytes - removed > budget) do
    removed = removed + #redis.call('LPOP', ekey); len = len - 1
  end
  if removed > 0 then redis.call('INCRBY', bkey, -removed) end
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('SET', p .. K.chain .. ARGV[i], ARGV[i + 1])
  if ARGV[i + 2] == '1' then redis.call('RPUSH', p .. K.chains .. sid, ARGV[i]) end
  i = i + 3
end
touch(p, sid, tonumber(ARGV[3]), tonumber(ARGV[4]))
redis.call('ZADD', p .. K.index, ARGV[8], sid)
redis.call('PEXPIRE', p .. K.index, ARGV[3])
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('PUBLISH', ARGV[5], ARGV[i]); i = i + 1 end
return {1, item}
";

/// ARGV: prefix, sid. Returns `{session or false, chain json...}`.
const LOAD_BODY: &str = r"
local p, sid = ARGV[1], ARGV[2]
local out = {redis.call('GET', p .. K.sessions .. sid) or false}
for _, cid in ipairs(redis.call('LRANGE', p .. K.chains .. sid, 0, -1)) do
  local c = redis.call('GET', p .. K.chain .. cid)
  if c then table.insert(out, c) end
end
return out
";

/// ARGV: prefix, sid, after (-1 = none), limit (-1 = all), newest ('1').
/// Events are contiguous by seq (only the oldest are trimmed), so positions follow from the
/// last seq and the list length without parsing anything.
/// Returns `{last seq, list length, events...}`.
const READ_BODY: &str = r"
local p, sid = ARGV[1], ARGV[2]
local last = tonumber(redis.call('GET', p .. K.seq .. sid) or '0')
local key = p .. K.events .. sid
local len = redis.call('LLEN', key)
local first = last - len + 1
local after, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local start, stop = 0, len - 1
if after >= 0 then start = math.max(after - first + 1, 0) end
if limit >= 0 then
  if ARGV[5] == '1' then start = math.max(start, len - limit) else stop = math.min(stop, start + limit - 1) end
end
local out = {last, len}
if limit ~= 0 and start <= stop then
  for _, e in ipairs(redis.call('LRANGE', key, start, stop)) do table.insert(out, e) end
end
return out
";

/// ARGV: prefix, sid, ttl, qttl, cap, item. Returns the queue length, -1 without the
/// session, -2 when full.
const PUSH_INPUT_BODY: &str = r"
local p, sid = ARGV[1], ARGV[2]
if redis.call('EXISTS', p .. K.sessions .. sid) == 0 then return -1 end
local key = p .. K.input .. sid
if redis.call('LLEN', key) >= tonumber(ARGV[5]) then return -2 end
local n = redis.call('RPUSH', key, ARGV[6])
touch(p, sid, tonumber(ARGV[3]), tonumber(ARGV[4]))
return n
";

/// ARGV: prefix, sid, ttl, qttl, command id, record json, cap, records. Returns 0 without
/// the session, -2 when `cap` commands are pending. Past `records` command records, the
/// oldest claimed or finished ones (ids start with their issue time) are dropped down to
/// nine tenths of it, so the set a session's every write refreshes stays bounded.
const PUSH_COMMAND_BODY: &str = r"
local p, sid, id = ARGV[1], ARGV[2], ARGV[5]
if redis.call('EXISTS', p .. K.sessions .. sid) == 0 then return 0 end
if redis.call('LLEN', p .. K.commands .. sid) >= tonumber(ARGV[7]) then return -2 end
local idkey = p .. K.cmdids .. sid
local records = tonumber(ARGV[8])
if redis.call('SCARD', idkey) >= records then
  local ids = redis.call('SMEMBERS', idkey)
  table.sort(ids)
  local excess = #ids - math.floor(records * 9 / 10)
  for _, old in ipairs(ids) do
    if excess <= 0 then break end
    local ckey = p .. K.command .. old
    local st = redis.call('HGET', ckey, 'status')
    if st ~= 'pending' and not redis.call('HGET', ckey, 'leaseUntil') then
      redis.call('DEL', ckey)
      redis.call('SREM', idkey, old)
      excess = excess - 1
    end
  end
end
redis.call('HSET', p .. K.command .. id, 'json', ARGV[6], 'sessionId', sid, 'status', 'pending')
redis.call('RPUSH', p .. K.commands .. sid, id)
redis.call('SADD', p .. K.cmdids .. sid, id)
touch(p, sid, tonumber(ARGV[3]), tonumber(ARGV[4]))
return 1
";

/// ARGV: prefix, sid, ttl, qttl, now, lease ms (0 = none). Claims every pending command
/// and every leased one whose lease ran out. Returns the claimed records' json.
const CLAIM_BODY: &str = r"
local p, sid, now, lease = ARGV[1], ARGV[2], tonumber(ARGV[5]), tonumber(ARGV[6])
local lkey = p .. K.leases .. sid
local ids = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', lkey, '-inf', now)) do
  redis.call('ZREM', lkey, id)
  if redis.call('HGET', p .. K.command .. id, 'status') == 'delivered' then table.insert(ids, id) end
end
local qkey = p .. K.commands .. sid
for _, id in ipairs(redis.call('LRANGE', qkey, 0, -1)) do table.insert(ids, id) end
redis.call('DEL', qkey)
local out = {}
for _, id in ipairs(ids) do
  local ckey = p .. K.command .. id
  local json = redis.call('HGET', ckey, 'json')
  if json then
    redis.call('HSET', ckey, 'status', 'delivered', 'deliveredAt', ARGV[5])
    if lease > 0 then
      redis.call('HSET', ckey, 'leaseUntil', now + lease)
      redis.call('ZADD', lkey, now + lease, id)
    else
      redis.call('HDEL', ckey, 'leaseUntil')
    end
    table.insert(out, json)
  end
end
if #out > 0 then touch(p, sid, tonumber(ARGV[3]), tonumber(ARGV[4])) end
return out
";

/// ARGV: prefix, command id, now, status, result ('' = none), error ('' = none), qttl.
/// Returns the record's fields, or nil for an unknown command.
const ACK_BODY: &str = r"
local p, id = ARGV[1], ARGV[2]
local ckey = p .. K.command .. id
if redis.call('EXISTS', ckey) == 0 then return false end
redis.call('HSET', ckey, 'status', ARGV[4], 'ackedAt', ARGV[3])
if ARGV[5] ~= '' then redis.call('HSET', ckey, 'result', ARGV[5]) else redis.call('HDEL', ckey, 'result') end
if ARGV[6] ~= '' then redis.call('HSET', ckey, 'error', ARGV[6]) else redis.call('HDEL', ckey, 'error') end
redis.call('HDEL', ckey, 'leaseUntil')
local sid = redis.call('HGET', ckey, 'sessionId')
if sid then redis.call('ZREM', p .. K.leases .. sid, id) end
redis.call('PEXPIRE', ckey, ARGV[7])
return redis.call('HGETALL', ckey)
";

/// ARGV: prefix, sid. Removes every key of the session. Returns 1 if it existed.
const DELETE_BODY: &str = r"
local p, sid = ARGV[1], ARGV[2]
local existed = redis.call('EXISTS', p .. K.sessions .. sid)
for _, cid in ipairs(redis.call('LRANGE', p .. K.chains .. sid, 0, -1)) do
  redis.call('DEL', p .. K.chain .. cid)
end
for _, id in ipairs(redis.call('SMEMBERS', p .. K.cmdids .. sid)) do
  redis.call('DEL', p .. K.command .. id)
end
for _, k in ipairs({K.sessions, K.events, K.seq, K.chains, K.bytes, K.commands, K.input, K.leases, K.cmdids}) do
  redis.call('DEL', p .. k .. sid)
end
redis.call('ZREM', p .. K.index, sid)
return existed
";

/// Every script starts with the key table ([`super::keys::lua_preamble`]), so a key is
/// spelled once in Rust and once, generated from it, in Lua.
fn script(parts: &[&str]) -> String {
    let mut out = super::keys::lua_preamble();
    for part in parts {
        out.push_str(part);
    }
    out
}

pub fn commit() -> String {
    script(&[TOUCH, COMMIT_BODY])
}

pub fn load() -> String {
    script(&[LOAD_BODY])
}

pub fn read() -> String {
    script(&[READ_BODY])
}

pub fn push_input() -> String {
    script(&[TOUCH, PUSH_INPUT_BODY])
}

pub fn push_command() -> String {
    script(&[TOUCH, PUSH_COMMAND_BODY])
}

pub fn claim() -> String {
    script(&[TOUCH, CLAIM_BODY])
}

pub fn ack() -> String {
    script(&[ACK_BODY])
}

pub fn delete() -> String {
    script(&[DELETE_BODY])
}
