-- Reads, atomically, what a socket needs when it opens: both totals, the stream's latest
-- seq, its recent gifts and top donors, and the events after `since` (from the bounded
-- log), with whether the log still reaches back that far.
--
-- KEYS: 1 campaign totals, 2 campaign donors, 3 stream totals, 4 stream donors,
--       5 stream seq, 6 stream log, 7 stream top, 8 donor names
-- ARGV: 1 since (-1 for none), 2 recent gifts wanted, 3 top donors wanted
-- Returns: {campaign counters, campaign donors, stream counters, stream donors, seq,
--           recent gift frames (newest first), top {donor key, amount, name}...,
--           replayed frames (oldest first), gap (0/1)}

local campaign = redis.call('HMGET', KEYS[1], unpack(COUNTERS))
local stream = redis.call('HMGET', KEYS[3], unpack(COUNTERS))
local seq = tonumber(redis.call('GET', KEYS[5]) or '0')

-- Recent gifts: page back through the log until enough gifts are found, however many
-- refunds and milestones sit between them.
local recent = {}
local wanted = tonumber(ARGV[2])
local before = '+'
while wanted > 0 and #recent < wanted do
  local page = redis.call('XREVRANGE', KEYS[6], before, '-', 'COUNT', 50)
  for _, entry in ipairs(page) do
    local f = entry[2]
    if f[2] == 'gift' and #recent < wanted then
      recent[#recent + 1] = f[4]
    end
  end
  if #page < 50 then break end
  before = '(' .. page[#page][1]
end

local top = {}
local top_wanted = tonumber(ARGV[3])
if top_wanted > 0 then
  local ranked = redis.call('ZREVRANGE', KEYS[7], 0, top_wanted - 1, 'WITHSCORES')
  for i = 1, #ranked, 2 do
    local name = redis.call('HGET', KEYS[8], ranked[i]) or ''
    top[#top + 1] = {ranked[i], ranked[i + 1], name}
  end
end

local replay = {}
local gap = 0
local since = tonumber(ARGV[1])
if since > seq then
  -- A seq this log never reached: the live store was lost and its seqs began again,
  -- so nothing can be vouched for.
  gap = 1
elseif since >= 0 and since < seq then
  local first = redis.call('XRANGE', KEYS[6], '-', '+', 'COUNT', 1)
  local oldest = seq + 1
  if #first > 0 then
    oldest = tonumber(string.match(first[1][1], '^(%d+)'))
  end
  if oldest > since + 1 then
    gap = 1
  end
  for _, entry in ipairs(redis.call('XRANGE', KEYS[6], (since + 1) .. '-0', seq .. '-0')) do
    replay[#replay + 1] = entry[2][4]
  end
end

return {campaign, redis.call('PFCOUNT', KEYS[2]), stream, redis.call('PFCOUNT', KEYS[4]),
        seq, recent, top, replay, gap}
