-- A member's read without blocking. KEYS: stream. ARGV: group, member, the ID to read
-- after ('>' for new entries), count. Returns entry ID, payload, entry ID, payload...
-- (the payload false for an entry deleted by hand while pending): a third of the reply
-- XREADGROUP sends with every field, which redis-py parses line by line.
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[4],
                         'STREAMS', KEYS[1], ARGV[3])
local out = {}
if not reply then return out end
for _, entry in ipairs(reply[1][2]) do
  local payload = false
  if entry[2] then
    for j = 1, #entry[2], 2 do
      if entry[2][j] == 'payload' then payload = entry[2][j + 1] end
    end
  end
  out[#out + 1] = entry[1]
  out[#out + 1] = payload
end
return out
