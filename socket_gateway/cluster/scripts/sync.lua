-- One member's contribution to one room (KEYS[1] = p{a}); the room's first writer owns its sampling.
local rk, member = KEYS[1], ARGV[1]
local conn, anon, ask = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
local interval, period, nadd = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local mine = rk .. ':v:' .. member
set_contribution(rk, member, conn, anon)
for i = 8, 7 + nadd do add_viewer(rk, mine, ARGV[i]) end
for i = 8 + nadd, #ARGV do remove_viewer(rk, mine, ARGV[i]) end
local claimed = 0
if conn > 0 and redis.call('SET', rk .. ':o', member, 'NX') then claimed = 1 end
local counts = room_counts(rk)
forget_if_empty(rk, counts)
if not ask then return {counts[1], counts[2], 0, 0, claimed} end
local decision = gate(rk, member, interval, false, period, counts)
-- {conn, uniq, 1, 0, claimed}: publish these; {conn, uniq, 0, 0, claimed}; {conn, uniq, -1, wait ms, claimed}
return {counts[1], counts[2], decision[1], decision[1] == -1 and decision[2] or 0, claimed}
