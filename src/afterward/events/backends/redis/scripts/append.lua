-- Appends several records at once (one record is a single XADD, no script).
-- KEYS: the streams. ARGV: per record, its stream's index in KEYS, its number of fields,
-- then its fields (name, value...). '0-*' lets Redis number the entries densely:
-- 0-<offset + 1>. All or none: a stream ending with an entry another client added with
-- an automatic ID refuses '0-*', so that is checked first, and nothing is written then
-- (the caller adopts those entries, adopt.lua, and appends again).
for _, stream in ipairs(KEYS) do
  local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #top > 0 and string.sub(top[1][1], 1, 2) ~= '0-' then
    return redis.error_reply('ERR ' .. stream .. ': the ID specified in XADD is equal or smaller than the target stream top item')
  end
end
local i = 1
while i <= #ARGV do
  local stream = KEYS[tonumber(ARGV[i])]
  local count = tonumber(ARGV[i + 1])
  redis.call('XADD', stream, '0-*', unpack(ARGV, i + 2, i + 1 + 2 * count))
  i = i + 2 + 2 * count
end
return 1
