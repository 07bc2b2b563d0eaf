local p, sid = ARGV[1], ARGV[2]
local skey = p .. K.sessions .. sid
local cur = redis.call('GET', skey)
if (cur or '') ~= ARGV[6] then return {0} end
local ikey = p .. K.eventids .. sid
local n = tonumber(ARGV[14])
local dups = {}
for j = 0, n - 1 do
  local id = ARGV[16 + 2 * j]
  if id ~= '' then
    local seq = redis.call('ZSCORE', ikey, id)
    if seq then table.insert(dups, id); table.insert(dups, seq) end
  end
end
if #dups > 0 then return {3, dups} end
local item = false
if ARGV[11] == '1' then
  item = redis.call('LPOP', p .. K.input .. sid)
  if not item then return {2} end
end
redis.call('SET', skey, ARGV[7])
if ARGV[9] ~= '' then redis.call('SET', p .. K.seq .. sid, ARGV[9]) end
if ARGV[13] ~= '' then redis.call('SET', p .. K.epoch .. sid, ARGV[13]) end
local i = 15
local ekey = p .. K.events .. sid
if n > 0 then
  local len, added = 0, 0
  local last = tonumber(ARGV[9])
  for j = 1, n do
    len = redis.call('RPUSH', ekey, ARGV[i]); added = added + #ARGV[i]
    if ARGV[i + 1] ~= '' then redis.call('ZADD', ikey, last - n + j, ARGV[i + 1]) end
    i = i + 2
  end
  local bkey = p .. K.bytes .. sid
  local bytes = redis.call('INCRBY', bkey, added)
  local cap, budget = tonumber(ARGV[10]), tonumber(ARGV[12])
  local removed = 0
  while len > 1 and (len > cap or bytes - removed > budget) do
    removed = removed + #redis.call('LPOP', ekey); len = len - 1
  end
  if removed > 0 then
    redis.call('INCRBY', bkey, -removed)
    -- Trimmed events take their ids along.
    redis.call('ZREMRANGEBYSCORE', ikey, '-inf', '(' .. (last - len + 1))
  end
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
-- The listing indexes: by status, by user, and the users, scored by activity.
local old_status, old_user, new_status, new_user = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
local ttl, score = tonumber(ARGV[3]), ARGV[8]
if old_status ~= '' and old_status ~= new_status then
  redis.call('ZREM', p .. K.bystatus .. old_status, sid)
end
redis.call('ZADD', p .. K.bystatus .. new_status, score, sid)
redis.call('PEXPIRE', p .. K.bystatus .. new_status, ttl)
if old_user ~= '' and old_user ~= new_user then redis.call('ZREM', p .. K.byuser .. old_user, sid) end
if new_user ~= '' then
  redis.call('ZADD', p .. K.byuser .. new_user, score, sid)
  redis.call('PEXPIRE', p .. K.byuser .. new_user, ttl)
  redis.call('ZADD', p .. K.users, score, new_user)
  redis.call('PEXPIRE', p .. K.users, ttl)
end
redis.call('HSET', p .. K.meta .. sid, 'status', new_status, 'user', new_user)
redis.call('PEXPIRE', p .. K.meta .. sid, ttl)
return {1, item}
