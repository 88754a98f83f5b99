if redis.call('GET', ARGV[1] .. 'sampler') == ARGV[2] .. '|' .. ARGV[3] then
  redis.call('DEL', ARGV[1] .. 'sampler')
  local closed = tonumber(ARGV[4])
  if closed > tonumber(redis.call('GET', ARGV[1] .. 'handed_over') or '0') then
    redis.call('SET', ARGV[1] .. 'handed_over', closed)
  end
end
local now = redis.call('TIME')
return redis.call('ZCOUNT', ARGV[1] .. 'nodes', tonumber(now[1]) * 1000, '+inf')
