-- A replay. KEYS: position hash, processed IDs, key versions, the commit log
-- (_codec.Keys.state), stream. ARGV: topic, forget, group, then partition/offset pairs. With positions, the consumer group (if any)
-- moves there and its pending entries are dropped: a batch in flight commits without
-- moving the position.
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[3], KEYS[4])
  local done = redis.call('HGETALL', KEYS[2])
  for i = 1, #done, 2 do
    if done[i + 1] == ARGV[1] then redis.call('HDEL', KEYS[2], done[i]) end
  end
end
local position = redis.call('HGET', KEYS[1], '0')
if #ARGV >= 4 and position and redis.call('EXISTS', KEYS[5]) == 1 then
  local moved = redis.pcall('XGROUP', 'SETID', KEYS[5], ARGV[3], '0-' .. position)
  if type(moved) == 'table' and moved.err then
    if not string.find(moved.err, 'NOGROUP', 1, true) then return moved end
  else
    while true do
      local pending = redis.call('XPENDING', KEYS[5], ARGV[3], '-', '+', 1000)
      if #pending == 0 then break end
      local ids = {}
      for j, entry in ipairs(pending) do ids[j] = entry[1] end
      redis.call('XACK', KEYS[5], ARGV[3], unpack(ids))
    end
  end
end
return 1
