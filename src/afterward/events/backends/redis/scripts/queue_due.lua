-- include: _queue_lib.lua
-- JobLedger.due_delayed (reads only). KEYS: the queue's delayed set. ARGV: prefix,
-- queue, limit. Returns per delayed job due by now, earliest first: id, payload, due,
-- priority, tries, correlation ID (nil: none).
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', score(now()), 'LIMIT', 0,
  tonumber(ARGV[3]))
local reply = {}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', job_key(id), 'payload', 'due', 'priority', 'tries', 'cid')
  if f[1] then
    reply[#reply + 1] = id
    for j = 1, 5 do reply[#reply + 1] = f[j] end
  end
end
return reply
