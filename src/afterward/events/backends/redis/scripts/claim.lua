-- KEYS: the claim. ARGV: owner, TTL in ms. Returns 0: held by another; 1: renewed;
-- 2: taken afresh (nobody held it, not even this owner). See afterward.events._lease.Held.
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  if holder then return 1 end
  return 2
end
return 0
