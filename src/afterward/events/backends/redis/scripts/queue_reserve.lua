-- include: _queue_lib.lua
-- WorkQueue.reserve. KEYS: the queue's ready, delayed, running and failed sets. ARGV:
-- prefix, queue, worker, limit, lease (s), batch, the WorkerDied error (a format of
-- attempt and tries). First the queue catches up, at most ``batch`` jobs of each kind
-- per call so one script never holds Redis long: due jobs become ready, and expired
-- leases make their job ready again, or failed when that delivery was its last try.
-- Then up to ``limit`` ready jobs are leased to the worker, their attempt counted.
-- Returns {jobs made due, leases expired, then per job: id, payload, due, priority,
-- tries, correlation ID (nil: none), attempt}.
local queue, worker, batch = ARGV[2], ARGV[3], tonumber(ARGV[6])
local clock = now()

local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', score(clock), 'LIMIT', 0, batch)
-- A member whose hash is gone (deleted by hand) is dropped, never an error: a script
-- that fails half-way keeps its first writes, and would fail every reservation after.
for _, id in ipairs(due) do
  local key = job_key(id)
  local rank = redis.call('HGET', key, 'rank')
  if rank then make_ready(key, queue, id, rank) end
end
if #due > 0 then redis.call('ZREM', KEYS[2], unpack(due)) end

local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', score(clock), 'LIMIT', 0, batch)
for _, id in ipairs(expired) do
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'attempts', 'tries', 'rank')
  local attempts, tries = tonumber(f[1]), tonumber(f[2])
  redis.call('HDEL', key, 'worker')
  if not f[3] then  -- its hash is gone: only dropped from the running set
  elseif attempts >= tries then
    redis.call('HSET', key, 'state', 'failed', 'traceback', '', 'failed_at', score(clock),
      'error', string.format(ARGV[7], attempts, tries))
    redis.call('ZADD', KEYS[4], score(clock), id)
  else
    make_ready(key, queue, id, f[3])
  end
end
if #expired > 0 then redis.call('ZREM', KEYS[3], unpack(expired)) end

local reply = {#due, #expired}
local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[4]))
local deadline = score(clock + tonumber(ARGV[5]))
for i = 1, #popped, 2 do
  lease_member(popped[i], worker, KEYS[3], deadline, reply)
end
return reply
