-- Expires the pending pledges of one campaign whose time has come: each leaves
-- `pledged` on its stream and its campaign, once, and the totals change is announced.
-- Safe to run from every gateway at once: a pledge no longer pending is left alone.
--
-- KEYS: 1 pending pledges (zset by expiry), 2 campaign totals
-- ARGV: 1 now (ms), 2 most pledges to expire in this call, 3 campaign key base
--       ("<prefix>:{c:<campaign>}"), 4 channel
-- Returns: the ids of the pledges expired by this call.

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local expired = {}
local touched = {}
for _, id in ipairs(due) do
  local pledge = ARGV[3] .. ':pl:' .. id
  local fields = redis.call('HMGET', pledge, 'status', 'amount', 'stream')
  if fields[1] == STATUS.pending then
    local amount = tonumber(fields[2])
    redis.call('HSET', pledge, 'status', STATUS.expired)
    redis.call('HINCRBY', KEYS[2], 'pledged', -amount)
    redis.call('HINCRBY', ARGV[3] .. ':s:' .. fields[3] .. ':totals', 'pledged', -amount)
    touched[fields[3]] = true
    expired[#expired + 1] = id
  end
  redis.call('ZREM', KEYS[1], id)
end
for stream, _ in pairs(touched) do
  announce_totals(ARGV[4], stream)
end
return expired
