-- Outbox effect of a failed payment: a pending pledge becomes failed and leaves `pledged`.
-- Idempotent: a pledge that is not pending is left alone.
--
-- KEYS: 1 pledge hash, 2 pending pledges (zset), 3 campaign totals, 4 stream totals
-- ARGV: 1 pledge id, 2 channel, 3 stream
-- Returns: 1 when the pledge was failed by this call, else 0.

local fields = redis.call('HMGET', KEYS[1], 'status', 'amount')
if fields[1] ~= STATUS.pending then
  return 0
end
local amount = tonumber(fields[2])
if not amount or not integers(KEYS[3]) or not integers(KEYS[4]) then
  return redis.error_reply('the pledge or the totals hold a value that is not an integer')
end
redis.call('HSET', KEYS[1], 'status', STATUS.failed)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'pledged', -amount)
redis.call('HINCRBY', KEYS[4], 'pledged', -amount)
announce_totals(ARGV[2], ARGV[3])
return 1
