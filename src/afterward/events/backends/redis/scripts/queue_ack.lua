-- include: _queue_lib.lua
-- WorkQueue.ack. KEYS: the queue's running set. ARGV: prefix, queue, worker, job ID.
-- Deletes the job if the worker holds it; returns 1, else 0.
local key = held(ARGV[2], ARGV[3], ARGV[4])
if not key then return 0 end
redis.call('ZREM', KEYS[1], ARGV[4])
redis.call('DEL', key)
return 1
