-- include: _queue_lib.lua
-- WorkQueue.retry. KEYS: the queue's delayed set. ARGV: prefix, queue, worker, job ID,
-- due, due key, payload. If the worker holds the job: its next attempt's payload and due
-- time, ready or delayed by the clock; returns 1, else 0.
local queue, id, due = ARGV[2], ARGV[4], ARGV[5]
local key = held(queue, ARGV[3], id)
if not key then return 0 end
unlease(key, queue, id)
local f = redis.call('HMGET', key, 'prank', 'seq')
local rank = f[1] .. ARGV[6] .. f[2]
redis.call('HSET', key, 'payload', ARGV[7], 'due', due, 'rank', rank)
if tonumber(due) > now() then
  redis.call('ZADD', KEYS[1], due, id)
  redis.call('HSET', key, 'state', 'delayed')
else
  make_ready(key, queue, id, rank)
end
return 1
