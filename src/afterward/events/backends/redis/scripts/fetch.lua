-- A member's read without blocking. KEYS: stream. ARGV: group, member, the ID to read
-- after ('>' for new entries), count. Returns entry ID, fields, entry ID, fields... (the
-- fields false for an entry deleted by hand while pending): a flat reply, cheaper for
-- redis-py to parse than XREADGROUP's nested one.
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[4],
                         'STREAMS', KEYS[1], ARGV[3])
local out = {}
if not reply then return out end
for _, entry in ipairs(reply[1][2]) do
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2] or false
end
return out
