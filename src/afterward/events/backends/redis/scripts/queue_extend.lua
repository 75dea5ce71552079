-- include: _queue_lib.lua
-- WorkQueue.extend. KEYS: the queue's running set. ARGV: prefix, queue, worker, lease
-- (s), then job IDs. Renews the leases the worker holds and that have not run out;
-- returns their IDs.
local queue, worker = ARGV[2], ARGV[3]
local clock = now()
local deadline = score(clock + tonumber(ARGV[4]))
local kept = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local until_ = tonumber(redis.call('ZSCORE', KEYS[1], id))
  if until_ and until_ > clock and held(queue, worker, id) then
    redis.call('ZADD', KEYS[1], deadline, id)
    kept[#kept + 1] = id
  end
end
return kept
