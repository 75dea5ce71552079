-- Appends several records at once (one record is a single XADD, no script).
-- KEYS: the streams. ARGV: per record, its stream's index in KEYS, its number of fields,
-- then its fields (name, value...). '0-*' lets Redis number the entries densely:
-- 0-<offset + 1>.
local i = 1
while i <= #ARGV do
  local stream = KEYS[tonumber(ARGV[i])]
  local count = tonumber(ARGV[i + 1])
  redis.call('XADD', stream, '0-*', unpack(ARGV, i + 2, i + 1 + 2 * count))
  i = i + 2 + 2 * count
end
return 1
