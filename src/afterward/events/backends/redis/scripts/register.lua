-- Creates a group's positions if it has none. KEYS: position hash, registered groups.
-- ARGV: the (group, topic) pair as JSON, then partition/offset pairs.
if redis.call('EXISTS', KEYS[1]) == 0 then
  for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
  redis.call('SADD', KEYS[2], ARGV[1])
end
return 1
