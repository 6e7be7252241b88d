-- Shared by every script, put before each one when it is loaded. Above this, Rust writes
-- the table of pledge statuses (STATUS.pending, ...) from its enum, the counter fields of
-- a totals hash (COUNTERS) in the order it reads them, and the functions that publish on
-- a campaign's channel (announce_totals, announce_event) from its codec: the one place
-- each is spelled.

-- Whether every field of a hash is absent or an integer, so HINCRBY cannot fail half-way.
local function integers(key)
  for _, v in ipairs(redis.call('HMGET', key, unpack(COUNTERS))) do
    if v and not string.match(v, '^-?%d+$') then
      return false
    end
  end
  return true
end

-- The seq the next event of a stream gets: one past both the stream's counter and the
-- newest entry of its log, so appending with that explicit id cannot fail.
local function next_seq(seq_key, log_key)
  local seq = tonumber(redis.call('GET', seq_key) or '0') or 0
  local newest = redis.call('XREVRANGE', log_key, '+', '-', 'COUNT', 1)
  if #newest > 0 then
    local last = tonumber(string.match(newest[1][1], '^(%d+)'))
    if last and last > seq then
      seq = last
    end
  end
  return seq + 1
end

-- Appends one event frame to a stream's log at `seq` and announces it.
local function append(seq_key, log_key, seq, loglen, channel, stream, kind, event)
  event['seq'] = seq
  local frame = cjson.encode(event)
  redis.call('SET', seq_key, seq)
  redis.call('XADD', log_key, 'MAXLEN', loglen, seq .. '-0', 't', kind, 'f', frame)
  announce_event(channel, stream, frame)
end

local function text_or_null(v)
  if v == '' then return cjson.null end
  return v
end
