-- A member's lease in the member set (KEYS[1] = p:nodes): {whether it was still valid, live members}.
-- A member whose lease had lapsed is live again, but the node writes its whole state again as a new
-- member and retires this one (survivors may have reaped part of it).
local nodes, member, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local prev = redis.call('ZSCORE', nodes, member)
redis.call('ZADD', nodes, now + ttl, member)
local live = redis.call('ZCOUNT', nodes, now, '+inf')
if prev and tonumber(prev) >= now then return {1, live} end
return {0, live}
