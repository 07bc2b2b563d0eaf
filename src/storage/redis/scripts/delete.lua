local p, sid = ARGV[1], ARGV[2]
local existed = redis.call('EXISTS', p .. K.sessions .. sid)
for _, cid in ipairs(redis.call('LRANGE', p .. K.chains .. sid, 0, -1)) do
  redis.call('DEL', p .. K.chain .. cid)
end
for _, id in ipairs(redis.call('SMEMBERS', p .. K.cmdids .. sid)) do
  redis.call('DEL', p .. K.command .. id)
end
for _, k in ipairs({K.sessions, K.events, K.seq, K.chains, K.bytes, K.eventids, K.epoch, K.commands, K.input, K.inputkeys, K.leases, K.cmdids}) do
  redis.call('DEL', p .. k .. sid)
end
redis.call('ZREM', p .. K.index, sid)
local status = redis.call('HGET', p .. K.meta .. sid, 'status')
if status then redis.call('ZREM', p .. K.bystatus .. status, sid) end
local user = redis.call('HGET', p .. K.meta .. sid, 'user')
if user and user ~= '' then redis.call('ZREM', p .. K.byuser .. user, sid) end
redis.call('DEL', p .. K.meta .. sid)
if existed == 1 then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return existed
