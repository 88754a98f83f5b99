-- Key layout (store.py): every key of auction a is tagged {a}, every key of a node {n:node}, so one
-- auction's keys share a Redis Cluster slot.
local function room_key(p, a) return p .. '{' .. a .. '}' end
local function node_key(p, node) return p .. '{n:' .. node .. '}' end
local function room_counts(p, a)
  local rk = room_key(p, a)
  local conn, anon = 0, 0
  for _, v in ipairs(redis.call('HVALS', rk .. ':c')) do conn = conn + tonumber(v) end
  for _, v in ipairs(redis.call('HVALS', rk .. ':a')) do anon = anon + tonumber(v) end
  local uniq = redis.call('HLEN', rk .. ':u') + anon
  if conn == 0 then
    redis.call('SREM', p .. 'rooms', a)
    redis.call('DEL', rk .. ':c', rk .. ':a', rk .. ':u', rk .. ':last', rk .. ':settled', rk .. ':fresh')
  else
    redis.call('SADD', p .. 'rooms', a)
  end
  return {conn, uniq}
end
local function clear_node(p, node)
  local rooms = redis.call('SMEMBERS', node_key(p, node) .. ':rooms')
  for _, a in ipairs(rooms) do
    local rk = room_key(p, a)
    local mine = rk .. ':v:' .. node
    redis.call('HDEL', rk .. ':c', node)
    redis.call('HDEL', rk .. ':a', node)
    for _, v in ipairs(redis.call('SMEMBERS', mine)) do
      if redis.call('HINCRBY', rk .. ':u', v, -1) <= 0 then redis.call('HDEL', rk .. ':u', v) end
    end
    redis.call('DEL', mine)
    room_counts(p, a)
  end
  redis.call('DEL', node_key(p, node) .. ':rooms')
  return rooms
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The publish gate: {1, conn, uniq}: publish these; {0}: nothing new; {-1, wait ms}: another publish
-- holds the room's interval, try again after it. A settling call publishes the counts once more even
-- when unchanged, once per burst of updates (see cluster/publish.py). counts: the room's, if just computed.
local function gate(p, a, node, interval, settle, period, counts)
  local rk = room_key(p, a)
  local wait = redis.call('PTTL', rk .. ':lock')
  if wait > 0 then return {-1, wait} end
  counts = counts or room_counts(p, a)
  if counts[1] == 0 then return {0} end
  local value = counts[1] .. ':' .. counts[2]
  local settled = redis.call('EXISTS', rk .. ':settled') == 1
  if redis.call('GET', rk .. ':last') == value and (settled or not settle) then return {0} end
  redis.call('SET', rk .. ':last', value)
  if settle then redis.call('SET', rk .. ':settled', 1) else redis.call('DEL', rk .. ':settled') end
  redis.call('SET', rk .. ':lock', node, 'PX', interval)
  redis.call('SET', rk .. ':fresh', 1, 'PX', period)
  return {1, counts[1], counts[2]}
end
