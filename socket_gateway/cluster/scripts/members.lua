-- KEYS[1] = p:nodes. ARGV[1] 'dead': up to ARGV[2] members whose lease ran out, each with its expiry
-- (ms); 'live': the live members (one per gateway node: 50 at 50 nodes); 'forget': removes ARGV[2] if
-- its lease ran out (reaped); 'retire': ends ARGV[2]'s lease now, if it has one (replaced by a new
-- incarnation); 'count': the live members' number.
local nodes, what = KEYS[1], ARGV[1]
local now = now_ms()
if what == 'dead' then
  return redis.call('ZRANGEBYSCORE', nodes, '-inf', '(' .. now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
elseif what == 'live' then
  return redis.call('ZRANGEBYSCORE', nodes, now, '+inf')
elseif what == 'forget' then
  local score = redis.call('ZSCORE', nodes, ARGV[2])
  if score and tonumber(score) < now then redis.call('ZREM', nodes, ARGV[2]) end
  return 0
elseif what == 'retire' then
  return redis.call('ZADD', nodes, 'XX', 0, ARGV[2])
end
return redis.call('ZCOUNT', nodes, now, '+inf')
