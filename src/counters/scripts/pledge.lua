-- Accepts a pledge, once per idempotency key: validates, then writes the pledge, its
-- expiry, the pledged counters and the donor estimates together, and announces the
-- totals change. A repeat of the key answers the first pledge again; a repeat with a
-- different body is a conflict and changes nothing.
--
-- KEYS: 1 idempotency key, 2 pledge hash, 3 campaign totals, 4 stream totals,
--       5 campaign donors (HLL), 6 stream donors (HLL), 7 pending pledges (zset by expiry),
--       8 the campaign's streams (set), 9 the campaign's built marker
-- ARGV: 1 fingerprint, 2 pledge id, 3 amount, 4 stream, 5 donor key, 6 now (ms),
--       7 expires at (ms), 8 idempotency ttl (s), 9 pledge ttl (s), 10 channel,
--       11 currency, 12 public name, 13 anonymous (0/1), 14 message, 15 designation,
--       16 donor ref, 17 idempotency key
-- Returns: {"new"|"replay", pledge id, expires at (ms)}, {"conflict"}, or {"rebuild"}
-- when the campaign's counters are missing (Redis was lost) and must be rebuilt first.

if redis.call('EXISTS', KEYS[9]) == 0 then
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

redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2] .. ':' .. ARGV[7], 'EX', ARGV[8])
-- The same fields a rebuild writes for pending pledges (src/ledger/rebuild.rs).
redis.call('HSET', KEYS[2],
  'stream', ARGV[4], 'amount', amount, 'currency', ARGV[11], 'status', 'pending',
  'name', ARGV[12], 'anonymous', ARGV[13], 'message', ARGV[14], 'designation', ARGV[15],
  'donor_ref', ARGV[16], 'donor', ARGV[5], 'idempotency_key', ARGV[17],
  'created', ARGV[6], 'expires', ARGV[7])
redis.call('EXPIRE', KEYS[2], ARGV[9])
redis.call('ZADD', KEYS[7], ARGV[7], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'pledged', amount)
redis.call('HINCRBY', KEYS[4], 'pledged', amount)
redis.call('PFADD', KEYS[5], ARGV[5])
redis.call('PFADD', KEYS[6], ARGV[5])
redis.call('SADD', KEYS[8], ARGV[4])
redis.call('PUBLISH', ARGV[10], 'T ' .. ARGV[4])
return {'new', ARGV[2], ARGV[7]}
