-- KEYS: the claim. ARGV: owner. Deletes the claim only if that owner holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
