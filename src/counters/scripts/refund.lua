-- Settlement hook, run after a refund's ledger row is committed: takes the refund off
-- its gift's stream and campaign (confirmed down, refunded up, the reversed match off
-- matched, the donor's leaderboard entry down) and appends the `refund` event with the
-- stream's next seq. Idempotent by refund id.
--
-- KEYS: 1 applied refund ids (set), 2 pledge hash, 3 campaign totals, 4 stream totals,
--       5 campaign top, 6 stream top, 7 stream seq, 8 stream log, 9 built marker
-- ARGV: 1 refund id, 2 gift id, 3 stream, 4 amount, 5 match reversed, 6 leaderboard key,
--       7 pledge fully refunded (0/1), 8 log length, 9 channel
-- Returns: the refund event's seq, 0 when the refund was already counted, or -1 when
-- the campaign's counters are missing (a rebuild from the ledger will count it).

if redis.call('EXISTS', KEYS[9]) == 0 then
  return -1
end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local amount = tonumber(ARGV[4])
local reversed = tonumber(ARGV[5])
redis.call('HINCRBY', KEYS[3], 'confirmed', -amount)
redis.call('HINCRBY', KEYS[4], 'confirmed', -amount)
redis.call('HINCRBY', KEYS[3], 'refunded', amount)
redis.call('HINCRBY', KEYS[4], 'refunded', amount)
if reversed > 0 then
  redis.call('HINCRBY', KEYS[3], 'matched', -reversed)
  redis.call('HINCRBY', KEYS[4], 'matched', -reversed)
end
for _, top in ipairs({KEYS[5], KEYS[6]}) do
  if tonumber(redis.call('ZINCRBY', top, -amount, ARGV[6])) <= 0 then
    redis.call('ZREM', top, ARGV[6])
  end
end
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'status', 'refunded')
end
local seq = redis.call('INCR', KEYS[7])
local frame = cjson.encode({ type = 'refund', seq = seq, gift_id = ARGV[2], amount = amount })
redis.call('XADD', KEYS[8], 'MAXLEN', ARGV[8], seq .. '-0', 't', 'refund', 'f', frame)
redis.call('PUBLISH', ARGV[9], 'E ' .. ARGV[3] .. ' ' .. frame)
redis.call('PUBLISH', ARGV[9], 'T ' .. ARGV[3])
return seq
