-- Raises a stream's seq to at least a floor (after Redis lost it), never lowering it.
--
-- KEYS: 1 the stream's seq
-- ARGV: 1 the floor
-- Returns: the seq now.

local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if floor > current then
  redis.call('SET', KEYS[1], floor)
  return floor
end
return current
