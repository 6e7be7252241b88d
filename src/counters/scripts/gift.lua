-- Settlement hook, run after a gift's ledger row is committed: counts the gift on its
-- stream and campaign (confirmed, matched, gifts, donors, leaderboards), appends the
-- `gift` event with the stream's next seq, and the milestones it crosses. Idempotent by
-- gift id: running it again after a crash between commit and here changes nothing.
--
-- KEYS: 1 applied gift ids (set), 2 pledge hash, 3 pending pledges (zset),
--       4 campaign totals, 5 stream totals, 6 campaign donors, 7 stream donors,
--       8 campaign top (zset), 9 stream top (zset), 10 donor names (hash),
--       11 stream seq, 12 stream log (stream), 13 milestones (hash), 14 streams (set)
-- ARGV: 1 gift id, 2 pledge id, 3 stream, 4 amount, 5 matched, 6 currency, 7 donor key
--       (for the unique-donor count),
--       8 public name ('' when anonymous or none), 9 message, 10 designation,
--       11 campaign goal, 12 stream goal (0 when none), 13 log length, 14 campaign key
--       base, 15 channel, 16 leaderboard key (an anonymous gift has one of its own, so
--       it is never merged with a named donor)
-- Returns: the gift event's seq, 0 when the gift was already counted, or -1 when the
-- campaign's counters are missing (a rebuild from the ledger will count it).

if redis.call('EXISTS', KEYS[15]) == 0 then
  return -1
end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local stream = ARGV[3]
local amount = tonumber(ARGV[4])
local matched = tonumber(ARGV[5])
local base = ARGV[14]
local channel = ARGV[15]
local loglen = ARGV[13]

-- A pledge that expired or failed (or was never seen here) counts as pledged again.
local status = redis.call('HGET', KEYS[2], 'status')
if status ~= 'pending' and status ~= 'confirmed' and status ~= 'refunded' then
  redis.call('HINCRBY', KEYS[4], 'pledged', amount)
  redis.call('HINCRBY', KEYS[5], 'pledged', amount)
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'status', 'confirmed')
end
redis.call('ZREM', KEYS[3], ARGV[2])

local campaign_confirmed = redis.call('HINCRBY', KEYS[4], 'confirmed', amount)
local stream_confirmed = redis.call('HINCRBY', KEYS[5], 'confirmed', amount)
if matched > 0 then
  redis.call('HINCRBY', KEYS[4], 'matched', matched)
  redis.call('HINCRBY', KEYS[5], 'matched', matched)
end
redis.call('HINCRBY', KEYS[4], 'gifts', 1)
redis.call('HINCRBY', KEYS[5], 'gifts', 1)
redis.call('PFADD', KEYS[6], ARGV[7])
redis.call('PFADD', KEYS[7], ARGV[7])
redis.call('ZINCRBY', KEYS[8], amount, ARGV[16])
redis.call('ZINCRBY', KEYS[9], amount, ARGV[16])
redis.call('HSET', KEYS[10], ARGV[16], ARGV[8])
redis.call('SADD', KEYS[14], stream)

local function text_or_null(v)
  if v == '' then return cjson.null end
  return v
end

-- Appends one event to a stream's log and announces it; returns its seq.
local function append(to_stream, kind, event)
  local seq_key = base .. ':s:' .. to_stream .. ':seq'
  local log_key = base .. ':s:' .. to_stream .. ':log'
  local seq = redis.call('INCR', seq_key)
  event['seq'] = seq
  local frame = cjson.encode(event)
  redis.call('XADD', log_key, 'MAXLEN', loglen, seq .. '-0', 't', kind, 'f', frame)
  redis.call('PUBLISH', channel, 'E ' .. to_stream .. ' ' .. frame)
  return seq
end

local seq = append(stream, 'gift', {
  type = 'gift', gift_id = ARGV[1], donor = text_or_null(ARGV[8]), amount = amount,
  currency = ARGV[6], message = text_or_null(ARGV[9]),
  designation = text_or_null(ARGV[10]), matched = matched, test = false })

-- Milestones: each of 25/50/75/100 % of a goal, the first time it is crossed.
local function crossed(field, total, goal)
  if goal <= 0 then return {} end
  local reached = tonumber(redis.call('HGET', KEYS[13], field) or '0')
  local out = {}
  for _, pct in ipairs({25, 50, 75, 100}) do
    if pct > reached and total * 100 >= goal * pct then
      out[#out + 1] = pct
      reached = pct
    end
  end
  if #out > 0 then redis.call('HSET', KEYS[13], field, reached) end
  return out
end

for _, pct in ipairs(crossed('s:' .. stream, stream_confirmed, tonumber(ARGV[12]))) do
  append(stream, 'milestone', { type = 'milestone', scope = 'stream', reached = pct })
end
for _, pct in ipairs(crossed('campaign', campaign_confirmed, tonumber(ARGV[11]))) do
  for _, each in ipairs(redis.call('SMEMBERS', KEYS[14])) do
    append(each, 'milestone', { type = 'milestone', scope = 'campaign', reached = pct })
  end
end

redis.call('PUBLISH', channel, 'T ' .. stream)
return seq
