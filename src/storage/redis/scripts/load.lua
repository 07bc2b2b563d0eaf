local p, sid = ARGV[1], ARGV[2]
local out = {redis.call('GET', p .. K.sessions .. sid) or false}
for _, cid in ipairs(redis.call('LRANGE', p .. K.chains .. sid, 0, -1)) do
  local c = redis.call('GET', p .. K.chain .. cid)
  if c then table.insert(out, c) end
end
return out
