-- include: _record_done.lua
-- A member's commit. KEYS: position hash, processed IDs, key versions, the commit log
-- (_codec.Keys.state), stream. ARGV: topic, done items, group, the new position, the
-- batch's entry IDs (a JSON array). The position moves (forward only) when some of the batch was still pending: a member that
-- lost its claim, or a batch a replay dropped, cannot move it back.
record_done(ARGV[1], ARGV[2])
local ids = cjson.decode(ARGV[5])
local acked = 0
for s = 1, #ids, 1000 do
  acked = acked + redis.call('XACK', KEYS[5], ARGV[3], unpack(ids, s, math.min(s + 999, #ids)))
end
if acked > 0 then
  local known = redis.call('HGET', KEYS[1], '0')
  if (not known) or tonumber(known) < tonumber(ARGV[4]) then
    redis.call('HSET', KEYS[1], '0', ARGV[4])
  end
end
return acked
