local p, node, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local rooms = clear_node(p, node)
for _, a in ipairs(rooms) do redis.call('DEL', room_key(p, a) .. ':last') end
if ttl > 0 then
  redis.call('ZADD', p .. 'nodes', now_ms() + ttl, node)
else
  redis.call('ZREM', p .. 'nodes', node)
end
return rooms
