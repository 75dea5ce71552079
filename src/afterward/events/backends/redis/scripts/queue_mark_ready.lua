-- include: _queue_lib.lua
-- JobLedger.mark_ready. KEYS: the queue's delayed set. ARGV: prefix, queue, then job
-- IDs. Each of them still delayed and due by now is ready (one retried meanwhile, due
-- later, stays delayed).
local queue, clock = ARGV[2], now()
for i = 3, #ARGV do
  local id = ARGV[i]
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'queue', 'state', 'due', 'rank')
  if f[1] == queue and f[2] == 'delayed' and tonumber(f[3]) <= clock then
    redis.call('ZREM', KEYS[1], id)
    make_ready(key, queue, id, f[4])
  end
end
return 1
