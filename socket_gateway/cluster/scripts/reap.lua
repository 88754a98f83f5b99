local p = ARGV[1]
local now = now_ms()
local dead = redis.call('ZRANGEBYSCORE', p .. 'nodes', '-inf', now)
local changed = {}
for _, node in ipairs(dead) do
  for _, a in ipairs(clear_node(p, node)) do table.insert(changed, a) end
  redis.call('ZREM', p .. 'nodes', node)
  redis.call('SET', p .. 'last_death', now)
end
return changed
