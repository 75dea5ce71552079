-- A member newly holding the claim. KEYS: stream, position hash. ARGV: group, member.
-- Creates the consumer group at the committed position if missing, moves every pending
-- entry to this member, and deletes the other consumers that have none left (dead ones).
local position = redis.call('HGET', KEYS[2], '0') or '0'
local made = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0-' .. position, 'MKSTREAM')
if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP', 1, true) then
  return made
end
local cursor = '0-0'
repeat
  cursor = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, cursor,
                      'COUNT', 1000, 'JUSTID')[1]
until cursor == '0-0'
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for j = 1, #consumer, 2 do info[consumer[j]] = consumer[j + 1] end
  if info['name'] ~= ARGV[2] and info['pending'] == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
  end
end
return 1
