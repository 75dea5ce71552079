-- include: _queue_lib.lua
-- WorkQueue.fail. KEYS: the queue's failed set. ARGV: prefix, queue, worker, job ID,
-- payload, attempts, error, traceback, failed_at. If the worker holds the job: into the
-- failed set; returns 1, else 0.
local queue, id = ARGV[2], ARGV[4]
local key = held(queue, ARGV[3], id)
if not key then return 0 end
unlease(key, queue, id)
redis.call('HSET', key, 'state', 'failed', 'payload', ARGV[5], 'attempts', ARGV[6],
  'error', ARGV[7], 'traceback', ARGV[8], 'failed_at', ARGV[9])
redis.call('ZADD', KEYS[1], ARGV[9], id)
return 1
