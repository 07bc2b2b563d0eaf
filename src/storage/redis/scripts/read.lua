local p, sid = ARGV[1], ARGV[2]
local last = tonumber(redis.call('GET', p .. K.seq .. sid) or '0')
local key = p .. K.events .. sid
local len = redis.call('LLEN', key)
local first = last - len + 1
local after, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local start, stop = 0, len - 1
if after >= 0 then start = math.max(after - first + 1, 0) end
if limit >= 0 then
  if ARGV[5] == '1' then start = math.max(start, len - limit) else stop = math.min(stop, start + limit - 1) end
end
local out = {last, len, redis.call('GET', p .. K.epoch .. sid) or false}
if limit ~= 0 and start <= stop then
  for _, e in ipairs(redis.call('LRANGE', key, start, stop)) do table.insert(out, e) end
end
return out
