-- include: _queue_lib.lua
-- WorkQueue.release. KEYS: the queue's running set (declared for routing). ARGV:
-- prefix, queue, worker, then job IDs. The jobs the worker holds are ready again at
-- once, their attempt uncounted.
local queue, worker = ARGV[2], ARGV[3]
for i = 4, #ARGV do
  local id = ARGV[i]
  local key = held(queue, worker, id)
  if key then
    unlease(key, queue, id)
    redis.call('HINCRBY', key, 'attempts', -1)
    make_ready(key, queue, id, redis.call('HGET', key, 'rank'))
  end
end
return 1
