-- Expires the pending pledges of one campaign whose time has come: each leaves
-- `pledged` on its stream and its campaign, once, and the totals change is announced.
-- Safe to run from every gateway at once: a pledge no longer pending is left alone.
--
-- KEYS: 1 pending pledges (zset by expiry), 2 campaign totals
-- ARGV: 1 now (ms), 2 most pledges to expire in this call, 3 campaign key base
--       ("<prefix>:{c:<campaign>}"), 4 channel
-- Returns: the ids of the pledges expired by this call.

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
-- Everything is read and checked before the first write.
local pending = {}
for _, id in ipairs(due) do
  local pledge = ARGV[3] .. ':pl:' .. id
  local fields = redis.call('HMGET', pledge, 'status', 'amount', 'stream')
  if fields[1] == STATUS.pending then
    local amount = tonumber(fields[2])
    local totals = ARGV[3] .. ':s:' .. fields[3] .. ':totals'
    if not amount or not integers(totals) then
      return redis.error_reply('pledge ' .. id .. ' or its totals hold a value that is not an integer')
    end
    pending[#pending + 1] = {id, pledge, amount, fields[3], totals}
  end
end
if not integers(KEYS[2]) then
  return redis.error_reply('the totals hold a value that is not an integer')
end

local expired = {}
local touched = {}
for _, p in ipairs(pending) do
  redis.call('HSET', p[2], 'status', STATUS.expired)
  redis.call('HINCRBY', KEYS[2], 'pledged', -p[3])
  redis.call('HINCRBY', p[5], 'pledged', -p[3])
  touched[p[4]] = true
  expired[#expired + 1] = p[1]
end
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
end
for stream, _ in pairs(touched) do
  announce_totals(ARGV[4], stream)
end
return expired
