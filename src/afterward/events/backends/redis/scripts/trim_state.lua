-- Retention of the group state. KEYS: a hash (processed IDs or key versions), its time
-- index (a sorted set, see _record_done.lua), then hashes whose same fields go with it
-- (the deliveries counted for those event IDs). ARGV: the age in seconds past which an
-- entry goes (measured on the server's clock, the one that scored it), the most to
-- remove. Returns how many fields of KEYS[1] were removed.
local clock = redis.call('TIME')
local cutoff = tonumber(clock[1]) + tonumber(clock[2]) / 1000000 - tonumber(ARGV[1])
local old = redis.call('ZRANGE', KEYS[2], '-inf', '(' .. cutoff, 'BYSCORE', 'LIMIT', 0,
                       tonumber(ARGV[2]))
if #old == 0 then return 0 end
local removed = 0
for s = 1, #old, 1000 do
  local slice = {unpack(old, s, math.min(s + 999, #old))}
  removed = removed + redis.call('HDEL', KEYS[1], unpack(slice))
  redis.call('ZREM', KEYS[2], unpack(slice))
  for k = 3, #KEYS do redis.call('HDEL', KEYS[k], unpack(slice)) end
end
return removed
