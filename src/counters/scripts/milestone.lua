-- Outbox effect of a milestone the ledger decided (a total first reached 25, 50, 75 or
-- 100 % of its goal): announced once, as a `milestone` event with its own seq on each
-- stream given (the stream's own milestone: one stream; the campaign's: all of them).
--
-- KEYS: 1 announced effects (set), 2 built marker, then for each stream: its seq, its log
-- ARGV: 1 milestone key, 2 scope ('stream' or 'campaign'), 3 percent reached,
--       4 log length, 5 channel, then the streams' slugs, in the order of their keys
-- Returns: {1, seq per stream} when announced now, {0} when announced before, {-1} when
-- the campaign's counters are missing.

if redis.call('EXISTS', KEYS[2]) == 0 then
  return {-1}
end
local announced = 'm:' .. ARGV[1]
if redis.call('SISMEMBER', KEYS[1], announced) == 1 then
  return {0}
end
local reached = tonumber(ARGV[3])
local streams = #ARGV - 5
if not reached or #KEYS ~= 2 + 2 * streams then
  return redis.error_reply('milestone: a percent, and a seq and a log key per stream')
end
local seqs = {}
for i = 1, streams do
  seqs[i] = next_seq(KEYS[1 + 2 * i], KEYS[2 + 2 * i])
end

redis.call('SADD', KEYS[1], announced)
local out = {1}
for i = 1, streams do
  append(KEYS[1 + 2 * i], KEYS[2 + 2 * i], seqs[i], ARGV[4], ARGV[5], ARGV[5 + i], 'milestone',
    { type = 'milestone', scope = ARGV[2], reached = reached })
  out[#out + 1] = seqs[i]
end
return out
