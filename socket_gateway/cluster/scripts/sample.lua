-- The owner's sample of one room (KEYS[1] = p{a}) at tick ARGV[6] (the minute's tick number ARGV[7])
-- of the minute starting ARGV[2]:
-- added to the minute's samples kept in the room's slot (:s), so whichever member owns the room next
-- closes the minute with every sample taken. Fenced: only the owner (:o) samples, a tick is taken
-- once and a minute closed once (:k holds the last tick and the last minute closed).
local rk, member, minute, closes = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local interval, period, tick, number = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('GET', rk .. ':o') ~= member then return {-1} end
local sk, kk = rk .. ':s', rk .. ':k'
local counts = room_counts(rk)
local c, u = counts[1], counts[2]
local clock = redis.call('HMGET', kk, 't', 'cl')
-- A tick (or a minute) the previous owner already took: the sampling just changed hands.
if (tonumber(clock[1]) or 0) >= tick or (tonumber(clock[2]) or -1) >= minute then return {0, c, u} end
redis.call('HSET', kk, 't', tick)
-- Per minute: start, samples, sum, peak, min, last counts, partial, whether sample i was taken on the
-- minute's tick i + 1 (os), and the samples themselves (v, comma-separated).
local fields = {'m', 'n', 'sum', 'peak', 'min', 'lc', 'lu', 'p', 'os', 'v'}
local closed = {}
local function read(into)
  local s = redis.call('HMGET', sk, unpack(fields))
  for i = 1, 9 do table.insert(into, tonumber(s[i]) or 0) end
  table.insert(into, s[10] or '')
  return s
end
local function close()
  local s = read(closed)
  redis.call('DEL', sk)
  redis.call('HSET', kk, 'cl', tonumber(s[1]))
  return tonumber(s[4]) or 0
end
local m = tonumber(redis.call('HGET', sk, 'm'))
-- A minute whose closing tick nobody sampled (its owner died or stalled) is closed by the next sample;
-- a room empty in every sample of a minute sends that all-zero minute and is forgotten.
if m and m < minute and close() == 0 and c == 0 then
  redis.call('DEL', rk .. ':o', kk)
  return {1, 1, 0, 0, 0, 1, unpack(closed)}
end
if redis.call('HSETNX', sk, 'm', minute) == 1 then
  redis.call('HSET', sk, 'n', 1, 'sum', c, 'peak', c, 'min', c, 'lc', c, 'lu', u, 'v', c)
  redis.call('HSET', sk, 'os', number == 1 and 1 or 0)
else
  local n = redis.call('HINCRBY', sk, 'n', 1)
  redis.call('HINCRBY', sk, 'sum', c)
  if c > tonumber(redis.call('HGET', sk, 'peak')) then redis.call('HSET', sk, 'peak', c) end
  if c < tonumber(redis.call('HGET', sk, 'min')) then redis.call('HSET', sk, 'min', c) end
  redis.call('HSET', sk, 'lc', c, 'lu', u, 'v', redis.call('HGET', sk, 'v') .. ',' .. c)
  if number ~= n then redis.call('HSET', sk, 'os', 0) end
end
local gone = 0
local current = {}
if closes then
  if close() == 0 and c == 0 then redis.call('DEL', rk .. ':o', kk); gone = 1 end
else
  read(current)
end
-- The owner also tells a quiet room its counts again (once four intervals after a burst, then once
-- per refresh period), through the room's publish lock.
local publish = 0
if c > 0 and redis.call('EXISTS', rk .. ':lock') == 0 and redis.call('EXISTS', rk .. ':fresh') == 0 then
  redis.call('SET', rk .. ':last', c .. ':' .. u)
  redis.call('SET', rk .. ':settled', 1)
  redis.call('SET', rk .. ':lock', member, 'PX', interval)
  redis.call('SET', rk .. ':fresh', 1, 'PX', period)
  publish = 1
end
-- {1, gone, conn, uniq, publish, #closed / 10, closed minutes..., the open minute (10, or none)}
local out = {1, gone, c, u, publish, #closed / 10}
for _, v in ipairs(closed) do table.insert(out, v) end
for _, v in ipairs(current) do table.insert(out, v) end
return out
