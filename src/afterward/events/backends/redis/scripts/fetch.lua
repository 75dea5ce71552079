-- A member's read without blocking. KEYS: stream. ARGV: group, member, the ID to read
-- after ('>' for new entries), count. Returns entry ID, fields, entry ID, fields... with
-- each entry's fields packed into one string: their lengths joined by ',', a newline,
-- then the fields end to end (false for an entry deleted by hand while pending). A
-- CloudEvent entry has about twenty fields: one bulk string each would make redis-py's
-- parser, not the events, the cost of a batch.
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[4],
                         'STREAMS', KEYS[1], ARGV[3])
local out = {}
if not reply then return out end
for _, entry in ipairs(reply[1][2]) do
  out[#out + 1] = entry[1]
  local fields = entry[2]
  if fields then
    local sizes = {}
    for i, field in ipairs(fields) do sizes[i] = #field end
    out[#out + 1] = table.concat(sizes, ',') .. '\n' .. table.concat(fields)
  else
    out[#out + 1] = false
  end
end
return out
