local function touch(p, sid, ttl, qttl)
  for _, k in ipairs({K.sessions, K.events, K.seq, K.chains, K.bytes, K.eventids, K.epoch, K.meta}) do
    redis.call('PEXPIRE', p .. k .. sid, ttl)
  end
  for _, cid in ipairs(redis.call('LRANGE', p .. K.chains .. sid, 0, -1)) do
    redis.call('PEXPIRE', p .. K.chain .. cid, ttl)
  end
  for _, k in ipairs({K.commands, K.input, K.inputkeys, K.leases, K.cmdids}) do
    redis.call('PEXPIRE', p .. k .. sid, qttl)
  end
  for _, id in ipairs(redis.call('SMEMBERS', p .. K.cmdids .. sid)) do
    redis.call('PEXPIRE', p .. K.command .. id, qttl)
  end
end
