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
