local p, node, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local prev = redis.call('ZSCORE', p .. 'nodes', node)
redis.call('ZADD', p .. 'nodes', now + ttl, node)
local live = redis.call('ZCOUNT', p .. 'nodes', now, '+inf')
if prev and tonumber(prev) >= now then return {1, live} end
return {0, live}
