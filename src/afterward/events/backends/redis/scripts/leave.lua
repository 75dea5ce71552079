-- A member leaving. KEYS: claim, stream. ARGV: member, group. Releases the claim and
-- deletes the consumer unless it still has pending entries (the next owner takes them).
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
local mine = redis.pcall('XPENDING', KEYS[2], ARGV[2], '-', '+', 1, ARGV[1])
if type(mine) == 'table' and not mine.err and #mine == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[2], ARGV[2], ARGV[1])
end
return 1
