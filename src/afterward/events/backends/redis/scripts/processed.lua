-- KEYS: the processed-ID hash. ARGV: a JSON array of event IDs. Returns the (1-based)
-- indexes of those recorded: usually few, so the reply stays small.
local found = {}
for i, id in ipairs(cjson.decode(ARGV[1])) do
  if redis.call('HEXISTS', KEYS[1], id) == 1 then found[#found + 1] = i end
end
return found
