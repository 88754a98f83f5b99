local p, node, a = ARGV[1], ARGV[2], ARGV[3]
local conn, anon, ask = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1'
local interval, period, nadd = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local rk = room_key(p, a)
local mine = rk .. ':v:' .. node
if conn > 0 then redis.call('HSET', rk .. ':c', node, conn) else redis.call('HDEL', rk .. ':c', node) end
if anon > 0 then redis.call('HSET', rk .. ':a', node, anon) else redis.call('HDEL', rk .. ':a', node) end
for i = 10, 9 + nadd do
  if redis.call('SADD', mine, ARGV[i]) == 1 then redis.call('HINCRBY', rk .. ':u', ARGV[i], 1) end
end
for i = 10 + nadd, #ARGV do
  if redis.call('SREM', mine, ARGV[i]) == 1 then
    if redis.call('HINCRBY', rk .. ':u', ARGV[i], -1) <= 0 then redis.call('HDEL', rk .. ':u', ARGV[i]) end
  end
end
if conn > 0 then
  redis.call('SADD', node_key(p, node) .. ':rooms', a)
else
  redis.call('SREM', node_key(p, node) .. ':rooms', a)
end
local counts = room_counts(p, a)
if not ask then return counts end
local decision = gate(p, a, node, interval, false, period, counts)
-- {conn, uniq, 1}: publish these; {conn, uniq, 0}; {conn, uniq, -1, wait ms}
return {counts[1], counts[2], decision[1], decision[1] == -1 and decision[2] or 0}
