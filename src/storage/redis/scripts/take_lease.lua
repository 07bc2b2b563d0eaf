local key = ARGV[1] .. K.lease .. ARGV[2]
local holder = redis.call('GET', key)
if not holder or holder == ARGV[3] then
  redis.call('SET', key, ARGV[3], 'PX', ARGV[4])
  return -1
end
local left = redis.call('PTTL', key)
if left < 0 then left = 0 end
return left
