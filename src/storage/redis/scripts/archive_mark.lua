local key = ARGV[1] .. K.due
if not redis.call('ZSCORE', key, ARGV[2]) and redis.call('ZCARD', key) >= tonumber(ARGV[5]) then
  return 0
end
redis.call('ZADD', key, ARGV[3], ARGV[2])
redis.call('PEXPIRE', key, ARGV[4])
return 1
