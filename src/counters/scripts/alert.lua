-- Outbox effect of a provider's test event: an alert marked test, shown once on the
-- stream's sockets, never logged nor replayed, counted nowhere.
--
-- KEYS: 1 announced effects (set)
-- ARGV: 1 alert key (the event's id), 2 channel, 3 stream, 4 frame
-- Returns: 1 when announced now, 0 when announced before.

if redis.call('SADD', KEYS[1], 't:' .. ARGV[1]) == 0 then
  return 0
end
announce_alert(ARGV[2], ARGV[3], ARGV[4])
return 1
