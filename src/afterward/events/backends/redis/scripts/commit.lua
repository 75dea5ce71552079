-- include: _record_done.lua
-- EventLog.commit. KEYS: position hash, processed IDs, key versions, the commit log
-- (_codec.Keys.state). ARGV: topic, done items, then partition/offset pairs.
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
record_done(ARGV[1], ARGV[2])
return 1
