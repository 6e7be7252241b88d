-- Settlement hook for a failed payment: a pending pledge becomes failed and leaves
-- `pledged`. Idempotent: a pledge that is not pending is left alone.
--
-- KEYS: 1 pledge hash, 2 pending pledges (zset), 3 campaign totals
-- ARGV: 1 pledge id, 2 campaign key base, 3 channel
-- Returns: 1 when the pledge was failed by this call, else 0.

local fields = redis.call('HMGET', KEYS[1], 'status', 'amount', 'stream')
if fields[1] ~= 'pending' then
  return 0
end
local amount = tonumber(fields[2])
redis.call('HSET', KEYS[1], 'status', 'failed')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'pledged', -amount)
redis.call('HINCRBY', ARGV[2] .. ':s:' .. fields[3] .. ':totals', 'pledged', -amount)
redis.call('PUBLISH', ARGV[3], 'T ' .. fields[3])
return 1
