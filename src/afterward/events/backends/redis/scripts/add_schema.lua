-- Register a schema version. KEYS[1]: the topic's versions (hash version -> JSON),
-- KEYS[2]: the set of topics with schemas. ARGV: topic, version, the stored JSON.
-- Stores it only when it is the next version (HLEN + 1); returns 1 then, else 0.
if redis.call('HLEN', KEYS[1]) + 1 ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
