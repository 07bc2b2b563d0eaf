local p, per_user = ARGV[1], tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV do
  local key = p .. K.byuser .. ARGV[i]
  local ids = redis.call('ZRANGE', key, '+inf', '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, per_user)
  table.insert(out, redis.call('ZCARD', key))
  table.insert(out, ids)
end
return out
