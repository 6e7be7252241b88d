-- Outbox effect of a gift committed to the ledger: counts it on its stream and campaign
-- (confirmed, matched, gifts, donors, leaderboards) unless a rebuild from the ledger
-- counted it already, moves its pledge on to confirmed either way, and announces it once:
-- the `gift` event with the stream's next seq, then the totals change. Everything that
-- can fail is checked before the first write.
--
-- KEYS: 1 counted gift ids (set), 2 announced effects (set), 3 pledge hash,
--       4 pending pledges (zset), 5 campaign totals, 6 stream totals, 7 campaign donors,
--       8 stream donors, 9 campaign top (zset), 10 stream top (zset), 11 donor names (hash),
--       12 stream seq, 13 stream log (stream), 14 built marker
-- ARGV: 1 gift id, 2 pledge id, 3 stream, 4 amount, 5 matched, 6 currency, 7 donor key
--       (for the unique-donor count), 8 public name ('' when anonymous or none),
--       9 message, 10 designation, 11 log length, 12 channel, 13 leaderboard key (an
--       anonymous gift has one of its own, never merged with a named donor)
-- Returns: the gift event's seq, 0 when it was announced before, or -1 when the
-- campaign's counters are missing (rebuild them from the ledger, then run this again).

if redis.call('EXISTS', KEYS[14]) == 0 then
  return -1
end
local announced = 'g:' .. ARGV[1]
if redis.call('SISMEMBER', KEYS[2], announced) == 1 then
  return 0
end
local amount = tonumber(ARGV[4])
local matched = tonumber(ARGV[5])
if not amount or amount <= 0 or not matched or matched < 0 then
  return redis.error_reply('gift amount and match must be integers')
end
if not integers(KEYS[5]) or not integers(KEYS[6]) then
  return redis.error_reply('the totals hold a value that is not an integer')
end
local stream = ARGV[3]
local seq = next_seq(KEYS[12], KEYS[13])

-- The pledge moves on whoever counted the gift (a rebuild counts gifts, not pledges):
-- paid, no longer pending. One that expired or failed left `pledged`, and is back in it
-- (a full rebuild that counted the gift in `pledged` marked its pledge confirmed; a
-- repair leaves `pledged` alone). One whose record is gone is in `pledged` only if the
-- gift is counted here.
local status = redis.call('HGET', KEYS[3], 'status')
local counted_now = redis.call('SADD', KEYS[1], ARGV[1]) == 1
if status == STATUS.expired or status == STATUS.failed or (not status and counted_now) then
  redis.call('HINCRBY', KEYS[5], 'pledged', amount)
  redis.call('HINCRBY', KEYS[6], 'pledged', amount)
end
if status and status ~= STATUS.confirmed and status ~= STATUS.refunded then
  redis.call('HSET', KEYS[3], 'status', STATUS.confirmed)
end
redis.call('ZREM', KEYS[4], ARGV[2])

if counted_now then
  for _, totals in ipairs({KEYS[5], KEYS[6]}) do
    redis.call('HINCRBY', totals, 'confirmed', amount)
    redis.call('HINCRBY', totals, 'matched', matched)
    redis.call('HINCRBY', totals, 'gifts', 1)
  end
  redis.call('PFADD', KEYS[7], ARGV[7])
  redis.call('PFADD', KEYS[8], ARGV[7])
  redis.call('ZINCRBY', KEYS[9], amount, ARGV[13])
  redis.call('ZINCRBY', KEYS[10], amount, ARGV[13])
  redis.call('HSET', KEYS[11], ARGV[13], ARGV[8])
end

redis.call('SADD', KEYS[2], announced)
append(KEYS[12], KEYS[13], seq, ARGV[11], ARGV[12], stream, 'gift', {
  type = 'gift', gift_id = ARGV[1], donor = text_or_null(ARGV[8]), amount = amount,
  currency = ARGV[6], message = text_or_null(ARGV[9]),
  designation = text_or_null(ARGV[10]), matched = matched, test = false })
announce_totals(ARGV[12], stream)
return seq
