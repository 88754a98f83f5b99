local p, node, interval, period = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for _, a in ipairs(redis.call('SMEMBERS', p .. 'rooms')) do
  local rk = room_key(p, a)
  if redis.call('EXISTS', rk .. ':lock') == 0 and redis.call('EXISTS', rk .. ':fresh') == 0 then
    local c = room_counts(p, a)
    if c[1] > 0 then
      redis.call('SET', rk .. ':last', c[1] .. ':' .. c[2])
      redis.call('SET', rk .. ':settled', 1)
      redis.call('SET', rk .. ':lock', node, 'PX', interval)
      redis.call('SET', rk .. ':fresh', 1, 'PX', period)
      table.insert(out, a); table.insert(out, c[1]); table.insert(out, c[2])
    end
  end
end
return out
