-- record_done(topic, items): records a batch's done items, for commit.lua and
-- member_commit.lua (included by their first line, see _scripts.py). ``items`` is a JSON
-- array of [event ID, processed (1/0)] or [event ID, processed, key, version] (the
-- version as a string; see _codec.done_json). KEYS[2] is the processed-ID hash,
-- KEYS[3] the key versions, KEYS[4] the commit log: ``items`` appended as they came,
-- after the server's time, which retention prunes by (trim_state.lua).
local function record_done(topic, items)
  local marks = {}
  local decoded = cjson.decode(items)
  for _, item in ipairs(decoded) do
    if item[2] == 1 then
      marks[#marks + 1] = item[1]
      marks[#marks + 1] = topic
    end
    if item[4] then
      local known = redis.call('HGET', KEYS[3], item[3])
      if (not known) or tonumber(known) < tonumber(item[4]) then
        redis.call('HSET', KEYS[3], item[3], item[4])
      end
    end
  end
  -- HSET in slices: unpack() of a whole large batch would overflow Lua's stack.
  for s = 1, #marks, 2000 do
    redis.call('HSET', KEYS[2], unpack(marks, s, math.min(s + 1999, #marks)))
  end
  if #decoded > 0 then
    local clock = redis.call('TIME')
    redis.call('RPUSH', KEYS[4], clock[1] .. '.' .. string.format('%06d', clock[2]) .. ' ' .. items)
  end
end
