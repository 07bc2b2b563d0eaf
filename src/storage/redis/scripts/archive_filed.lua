local due = ARGV[1] .. K.due
local at = redis.call('ZSCORE', due, ARGV[2])
if at and tonumber(at) <= tonumber(ARGV[3]) then
  redis.call('ZREM', due, ARGV[2])
end
local lease = ARGV[1] .. K.lease .. ARGV[4]
if redis.call('GET', lease) == ARGV[5] then
  redis.call('DEL', lease)
end
return 1
