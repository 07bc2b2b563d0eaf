local p, sid, now, lease = ARGV[1], ARGV[2], tonumber(ARGV[5]), tonumber(ARGV[6])
local lkey = p .. K.leases .. sid
local ids = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', lkey, '-inf', now)) do
  redis.call('ZREM', lkey, id)
  if redis.call('HGET', p .. K.command .. id, 'status') == S.delivered then table.insert(ids, id) end
end
local qkey = p .. K.commands .. sid
for _, id in ipairs(redis.call('LRANGE', qkey, 0, -1)) do table.insert(ids, id) end
redis.call('DEL', qkey)
local out = {}
for _, id in ipairs(ids) do
  local ckey = p .. K.command .. id
  local json = redis.call('HGET', ckey, 'json')
  if json then
    redis.call('HSET', ckey, 'status', S.delivered, 'deliveredAt', ARGV[5])
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
