local p = ARGV[1]
local out = {}
for _, a in ipairs(redis.call('SMEMBERS', p .. 'rooms')) do
  local c = room_counts(p, a)
  if c[1] > 0 then
    table.insert(out, a); table.insert(out, c[1]); table.insert(out, c[2])
  end
end
return out
