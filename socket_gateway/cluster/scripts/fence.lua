local p = ARGV[1]
local ok = 0
if redis.call('GET', p .. 'sampler') == ARGV[2] .. '|' .. ARGV[3] then ok = 1 end
return {ok, tonumber(redis.call('GET', p .. 'last_death') or '0')}
