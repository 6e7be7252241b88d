-- Accepts a pledge, once per idempotency key: validates, then writes the pledge, its
-- expiry and the pledged counters together, and announces the totals change. A repeat of
-- the key answers the first pledge again; a repeat with a different body is a conflict
-- and changes nothing. (Donors are counted when a gift settles, not here.)
--
-- KEYS: 1 idempotency key, 2 pledge hash, 3 campaign totals, 4 stream totals,
--       5 pending pledges (zset by expiry), 6 the campaign's built marker
-- ARGV: 1 fingerprint, 2 pledge id, 3 amount, 4 stream, 5 expires at (ms),
--       6 idempotency ttl (s), 7 pledge ttl (s), 8 channel, then the pledge hash's
--       field/value pairs (their layout is src/counters/pledge_hash.rs)
-- Returns: {"new"|"replay", pledge id, expires at (ms)}, {"conflict"}, or {"rebuild"}
-- when the campaign's counters are missing (Redis was lost) and must be rebuilt first.

if redis.call('EXISTS', KEYS[6]) == 0 then
  return {'rebuild'}
end

local existing = redis.call('GET', KEYS[1])
if existing then
  local fingerprint, pledge_id, expires = string.match(existing, '^([^:]*):([^:]*):([^:]*)$')
  if fingerprint == ARGV[1] then
    return {'replay', pledge_id, expires}
  end
  return {'conflict'}
end

local amount = tonumber(ARGV[3])
if not amount or amount <= 0 then
  return redis.error_reply('pledge amount must be a positive integer')
end
if #ARGV < 10 or (#ARGV - 8) % 2 ~= 0 then
  return redis.error_reply('the pledge hash comes as field/value pairs')
end
if not integers(KEYS[3]) or not integers(KEYS[4]) then
  return redis.error_reply('the totals hold a value that is not an integer')
end

redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2] .. ':' .. ARGV[5], 'EX', ARGV[6])
redis.call('HSET', KEYS[2], unpack(ARGV, 9))
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'pledged', amount)
redis.call('HINCRBY', KEYS[4], 'pledged', amount)
announce_totals(ARGV[8], ARGV[4])
return {'new', ARGV[2], ARGV[5]}
