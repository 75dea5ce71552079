-- Adopts the entries another client added with an automatic ID ('*': <ms>-<seq>) into
-- the stream's dense numbering (0-<offset + 1>), in their order: each is deleted and
-- appended again with '0-*' and the same fields. Such entries are always the stream's
-- tail (after one, an '0-*' append fails until they are adopted), so all of them are
-- adopted at once. A consumer group that was handed one is moved back to the last dense
-- entry and the adopted IDs are acknowledged: it reads the adopted copies instead, and
-- no group ever handles an entry whose ID is not an offset.
-- KEYS: the stream. Returns how many entries were adopted.
local foreign = redis.call('XRANGE', KEYS[1], '1-0', '+')
if #foreign == 0 then return 0 end
local dense = redis.call('XREVRANGE', KEYS[1], '0-18446744073709551615', '-', 'COUNT', 1)
local top = '0-0'
if #dense > 0 then top = dense[1][1] end
for _, info in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  if string.sub(fields['last-delivered-id'], 1, 2) ~= '0-' then
    for _, entry in ipairs(foreign) do
      redis.call('XACK', KEYS[1], fields['name'], entry[1])
    end
    redis.call('XGROUP', 'SETID', KEYS[1], fields['name'], top)
  end
end
for _, entry in ipairs(foreign) do redis.call('XDEL', KEYS[1], entry[1]) end
redis.call('XSETID', KEYS[1], top)
for _, entry in ipairs(foreign) do redis.call('XADD', KEYS[1], '0-*', unpack(entry[2])) end
return #foreign
