-- KEYS[1] of every script is the stem of the one Redis Cluster slot it touches: p{a} (an auction, see
-- store.py) or p{n:<member>} / p{lease} / p:nodes. A script builds its other key names from that stem
-- (same hash tag, same slot) and never touches a key of another slot.
-- A room's counts are kept as running totals (:t), so reading them costs the same at any size.
local function room_counts(rk)
  local t = redis.call('HMGET', rk .. ':t', 'c', 'a')
  local conn, anon = tonumber(t[1]) or 0, tonumber(t[2]) or 0
  return {conn, redis.call('HLEN', rk .. ':u') + anon}
end
-- A room nobody is in keeps only its sampling state (:o owner, :s samples): its owner closes the minute.
local function forget_if_empty(rk, counts)
  if counts[1] <= 0 then
    redis.call('DEL', rk .. ':t', rk .. ':c', rk .. ':a', rk .. ':u', rk .. ':last', rk .. ':settled', rk .. ':fresh')
  end
end
-- A member's connections / anonymous connections in the room, absolute; the totals follow.
local function set_contribution(rk, member, conn, anon)
  local old_c = tonumber(redis.call('HGET', rk .. ':c', member)) or 0
  local old_a = tonumber(redis.call('HGET', rk .. ':a', member)) or 0
  if conn > 0 then redis.call('HSET', rk .. ':c', member, conn) else redis.call('HDEL', rk .. ':c', member) end
  if anon > 0 then redis.call('HSET', rk .. ':a', member, anon) else redis.call('HDEL', rk .. ':a', member) end
  if conn ~= old_c then redis.call('HINCRBY', rk .. ':t', 'c', conn - old_c) end
  if anon ~= old_a then redis.call('HINCRBY', rk .. ':t', 'a', anon - old_a) end
  return old_c
end
local function add_viewer(rk, mine, v)
  if redis.call('SADD', mine, v) == 1 then redis.call('HINCRBY', rk .. ':u', v, 1) end
end
local function remove_viewer(rk, mine, v)
  if redis.call('SREM', mine, v) == 1 then
    if redis.call('HINCRBY', rk .. ':u', v, -1) <= 0 then redis.call('HDEL', rk .. ':u', v) end
  end
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The publish gate: {1, conn, uniq}: publish these; {0}: nothing new; {-1, wait ms}: another publish
-- holds the room's interval, try again after it. A settling call publishes the counts once more even
-- when unchanged, once per burst of updates (see cluster/publish.py). counts: the room's, if just computed.
local function gate(rk, node, interval, settle, period, counts)
  local wait = redis.call('PTTL', rk .. ':lock')
  if wait > 0 then return {-1, wait} end
  counts = counts or room_counts(rk)
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
