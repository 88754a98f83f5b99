local p, node, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local handed = tonumber(redis.call('GET', p .. 'handed_over') or '0')
local cur = redis.call('GET', p .. 'sampler')
if cur then
  local holder, token = string.match(cur, '^(.*)|(%d+)$')
  if holder == node then
    redis.call('PEXPIRE', p .. 'sampler', ttl)
    return {tonumber(token), handed}
  end
  return {0, handed}
end
local token = redis.call('INCR', p .. 'sampler_token')
redis.call('SET', p .. 'sampler', node .. '|' .. token, 'PX', ttl)
return {token, handed}
