-- Takes one member's contribution out of one room (KEYS[1] = p{a}): a dead member reaped, or a member
-- leaving. Its ownership of the room's sampling passes to ARGV[2] (none: ''). died: the minute being
-- sampled missed samples or counted the member's viewers twice, so it is flagged partial. closed: the
-- minute a leaving owner closed itself (0: none); its successor does not sample the rest of it.
local rk, member, successor, died, closed = KEYS[1], ARGV[1], ARGV[2], ARGV[3] == '1', tonumber(ARGV[4])
local old = set_contribution(rk, member, 0, 0)
local mine = rk .. ':v:' .. member
for _, v in ipairs(redis.call('SMEMBERS', mine)) do remove_viewer(rk, mine, v) end
local owned = redis.call('GET', rk .. ':o') == member
local handed = 0
if owned and closed > 0 then
  redis.call('DEL', rk .. ':s')
  redis.call('HSET', rk .. ':k', 'cl', closed)
end
if owned then
  if successor ~= '' then
    redis.call('SET', rk .. ':o', successor); handed = 1
  else
    redis.call('DEL', rk .. ':o', rk .. ':s', rk .. ':k')
  end
end
-- Flagged even between two minutes (the next sample opens the minute with the flag set).
if died and (owned or old > 0) and redis.call('EXISTS', rk .. ':o') == 1 then redis.call('HSET', rk .. ':s', 'p', 1) end
local counts = room_counts(rk)
forget_if_empty(rk, counts)
-- {conn, uniq, handed to successor, whether the member had connections there}
return {counts[1], counts[2], handed, old > 0 and 1 or 0}
