-- Outbox effect of a refund committed to the ledger: takes it off its gift's stream and
-- campaign (confirmed down, refunded up, the reversed match off matched, the donor's
-- leaderboard entry down) unless a rebuild counted it already, and announces it once:
-- the `refund` event with the stream's next seq. Checked before the first write.
--
-- KEYS: 1 counted refund ids (set), 2 announced effects (set), 3 counted gift ids (set),
--       4 pledge hash, 5 campaign totals, 6 stream totals, 7 campaign top, 8 stream top,
--       9 stream seq, 10 stream log, 11 built marker
-- ARGV: 1 refund id, 2 gift id, 3 stream, 4 amount, 5 match reversed, 6 leaderboard key,
--       7 pledge fully refunded (0/1), 8 log length, 9 channel
-- Returns: the refund event's seq, 0 when it was announced before, -1 when the campaign's
-- counters are missing, or -2 when its gift is not counted yet (run it again later).

if redis.call('EXISTS', KEYS[11]) == 0 then
  return -1
end
local announced = 'r:' .. ARGV[1]
if redis.call('SISMEMBER', KEYS[2], announced) == 1 then
  return 0
end
if redis.call('SISMEMBER', KEYS[3], ARGV[2]) == 0 then
  return -2
end
local amount = tonumber(ARGV[4])
local reversed = tonumber(ARGV[5])
if not amount or amount <= 0 or not reversed or reversed < 0 then
  return redis.error_reply('refund amount and reversed match must be integers')
end
if not integers(KEYS[5]) or not integers(KEYS[6]) then
  return redis.error_reply('the totals hold a value that is not an integer')
end
local seq = next_seq(KEYS[9], KEYS[10])

if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  for _, totals in ipairs({KEYS[5], KEYS[6]}) do
    redis.call('HINCRBY', totals, 'confirmed', -amount)
    redis.call('HINCRBY', totals, 'refunded', amount)
    if reversed > 0 then
      redis.call('HINCRBY', totals, 'matched', -reversed)
    end
  end
  for _, top in ipairs({KEYS[7], KEYS[8]}) do
    if tonumber(redis.call('ZINCRBY', top, -amount, ARGV[6])) <= 0 then
      redis.call('ZREM', top, ARGV[6])
    end
  end
end
-- The pledge moves on whoever counted the refund.
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('HSET', KEYS[4], 'status', STATUS.refunded)
end

redis.call('SADD', KEYS[2], announced)
append(KEYS[9], KEYS[10], seq, ARGV[8], ARGV[9], ARGV[3], 'refund',
  { type = 'refund', gift_id = ARGV[2], amount = amount })
announce_totals(ARGV[9], ARGV[3])
return seq
