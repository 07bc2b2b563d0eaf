local p, sid, id = ARGV[1], ARGV[2], ARGV[5]
if redis.call('EXISTS', p .. K.sessions .. sid) == 0 then return {0} end
local existing = redis.call('HGET', p .. K.command .. id, 'sessionId')
if existing then
  if existing ~= sid then return {-4} end
  return {-3, redis.call('HGETALL', p .. K.command .. id)}
end
if redis.call('LLEN', p .. K.commands .. sid) >= tonumber(ARGV[7]) then return {-2} end
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
    if st ~= S.pending and not redis.call('HGET', ckey, 'leaseUntil') then
      redis.call('DEL', ckey)
      redis.call('SREM', idkey, old)
      excess = excess - 1
    end
  end
end
redis.call('HSET', p .. K.command .. id, 'json', ARGV[6], 'sessionId', sid, 'status', S.pending)
redis.call('RPUSH', p .. K.commands .. sid, id)
redis.call('SADD', p .. K.cmdids .. sid, id)
touch(p, sid, tonumber(ARGV[3]), tonumber(ARGV[4]))
redis.call('PUBLISH', ARGV[9], ARGV[10])
return {1}
