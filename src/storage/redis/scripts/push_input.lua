local p, sid = ARGV[1], ARGV[2]
if redis.call('EXISTS', p .. K.sessions .. sid) == 0 then return {-1} end
local key = p .. K.input .. sid
local kkey = p .. K.inputkeys .. sid
local ikey = ARGV[10]
if ikey ~= '' and redis.call('ZSCORE', kkey, ikey) then return {-3, redis.call('LLEN', key)} end
if redis.call('LLEN', key) >= tonumber(ARGV[5]) then return {-2} end
local n = redis.call('RPUSH', key, ARGV[6])
if ikey ~= '' then
  redis.call('ZADD', kkey, ARGV[11], ikey)
  redis.call('ZREMRANGEBYRANK', kkey, 0, -(tonumber(ARGV[12]) + 1))
end
touch(p, sid, tonumber(ARGV[3]), tonumber(ARGV[4]))
redis.call('PUBLISH', ARGV[7], ARGV[8] .. n .. ARGV[9])
return {n}
