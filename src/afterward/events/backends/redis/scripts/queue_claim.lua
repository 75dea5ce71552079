-- include: _queue_lib.lua
-- JobLedger.claim (a Kafka bus's job marks). KEYS: the queue's ready, delayed, running
-- and failed sets. ARGV: prefix, queue, worker, limit, lease (s), the WorkerDied error
-- (a format of attempt and tries), then job IDs. Among those jobs only: a delayed one
-- due by now is ready, an expired lease makes its job ready again (or failed when that
-- delivery was its last try); then up to ``limit`` of the ready ones, by rank, are
-- leased to the worker, their attempt counted. Returns {the number of settled IDs (gone,
-- failed, or delayed until later), those IDs, then per job leased: id, payload, due,
-- priority, tries, correlation ID (nil: none), attempt}.
local queue, worker = ARGV[2], ARGV[3]
local clock = now()
local settled, free = {}, {}
for i = 7, #ARGV do
  local id = ARGV[i]
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'queue', 'state', 'due', 'rank', 'attempts', 'tries')
  local state = f[2]
  if f[1] ~= queue or not f[4] then
    state = 'gone'
  elseif state == 'running' and tonumber(redis.call('ZSCORE', KEYS[3], id) or 0) <= clock then
    unlease(key, queue, id)
    local attempts, tries = tonumber(f[5]), tonumber(f[6])
    if attempts >= tries then
      redis.call('HSET', key, 'state', 'failed', 'traceback', '', 'failed_at', score(clock),
        'error', string.format(ARGV[6], attempts, tries))
      redis.call('ZADD', KEYS[4], score(clock), id)
      state = 'failed'
    else
      make_ready(key, queue, id, f[4])
      state = 'ready'
    end
  elseif state == 'delayed' and tonumber(f[3]) <= clock then
    redis.call('ZREM', KEYS[2], id)
    make_ready(key, queue, id, f[4])
    state = 'ready'
  end
  if state == 'ready' then
    free[#free + 1] = f[4] .. '|' .. id
  elseif state ~= 'running' then
    settled[#settled + 1] = id
  end
end
table.sort(free)
local reply = {#settled}
for _, id in ipairs(settled) do reply[#reply + 1] = id end
local deadline = score(clock + tonumber(ARGV[5]))
for i = 1, math.min(tonumber(ARGV[4]), #free) do
  redis.call('ZREM', KEYS[1], free[i])
  lease_member(free[i], worker, KEYS[3], deadline, reply)
end
return reply
