-- Retention of a group's state on one topic. KEYS: the commit log (see _record_done.lua),
-- the processed-ID hash, the key versions, the deliveries counted. ARGV: the age in
-- seconds past which a commit's records go (measured on the server's clock, the one
-- that wrote the log), the most of each kind to remove (whole commits: it may go past).
-- A key's version goes only if no later commit raised it. Returns {processed IDs
-- removed, key versions removed}.
local clock = redis.call('TIME')
local cutoff = tonumber(clock[1]) + tonumber(clock[2]) / 1000000 - tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local processed, versions = 0, 0
while processed < limit and versions < limit do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then break end
  local space = string.find(head, ' ', 1, true)
  if tonumber(string.sub(head, 1, space - 1)) >= cutoff then break end
  redis.call('LPOP', KEYS[1])
  for _, item in ipairs(cjson.decode(string.sub(head, space + 1))) do
    if item[2] == 1 then
      processed = processed + redis.call('HDEL', KEYS[2], item[1])
      redis.call('HDEL', KEYS[4], item[1])
    end
    if item[4] and redis.call('HGET', KEYS[3], item[3]) == item[4] then
      versions = versions + redis.call('HDEL', KEYS[3], item[3])
    end
  end
end
return {processed, versions}
