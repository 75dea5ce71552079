-- record_done(topic, items): records a batch's done items, for commit.lua and
-- member_commit.lua (included by their first line, see _scripts.py). ``items`` is a JSON
-- array of [event ID, processed (1/0)] or [event ID, processed, key, version] (the
-- version as a string; see _codec.done_json). KEYS[2] is the processed-ID hash,
-- KEYS[3] the key versions, KEYS[4] and KEYS[5] their time indexes (sorted sets scored
-- by the server's time, which retention prunes by: trim_state.lua).
local function record_done(topic, items)
  local clock = redis.call('TIME')
  local now = tostring(tonumber(clock[1]) + tonumber(clock[2]) / 1000000)
  local marks, stamps, raised = {}, {}, {}
  for _, item in ipairs(cjson.decode(items)) do
    if item[2] == 1 then
      marks[#marks + 1] = item[1]
      marks[#marks + 1] = topic
      stamps[#stamps + 1] = now
      stamps[#stamps + 1] = item[1]
    end
    if item[4] then
      local known = redis.call('HGET', KEYS[3], item[3])
      if (not known) or tonumber(known) < tonumber(item[4]) then
        redis.call('HSET', KEYS[3], item[3], item[4])
        raised[#raised + 1] = now
        raised[#raised + 1] = item[3]
      end
    end
  end
  -- In slices: unpack() of a whole large batch would overflow Lua's stack.
  for s = 1, #marks, 2000 do
    redis.call('HSET', KEYS[2], unpack(marks, s, math.min(s + 1999, #marks)))
    redis.call('ZADD', KEYS[4], unpack(stamps, s, math.min(s + 1999, #stamps)))
  end
  for s = 1, #raised, 2000 do
    redis.call('ZADD', KEYS[5], unpack(raised, s, math.min(s + 1999, #raised)))
  end
end
