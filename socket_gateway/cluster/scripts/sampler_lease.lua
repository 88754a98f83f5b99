-- The coordinator lease (KEYS[1] = p{lease}): one node evaluates the seller alerts. {token or 0}.
local lk, node, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
local cur = redis.call('GET', lk .. ':holder')
if cur then
  local holder, token = string.match(cur, '^(.*)|(%d+)$')
  if holder == node then
    if ttl > 0 then redis.call('PEXPIRE', lk .. ':holder', ttl) else redis.call('DEL', lk .. ':holder') end
    return tonumber(token)
  end
  return 0
end
if ttl <= 0 then return 0 end
local token = redis.call('INCR', lk .. ':token')
redis.call('SET', lk .. ':holder', node .. '|' .. token, 'PX', ttl)
return token
