-- The work queue's layout and moves, for the queue_*.lua scripts (included by their first
-- line, see _scripts.py). ARGV[1] is the bus prefix; the keys mirror _queue_codec.QueueKeys:
-- <prefix>job:<id> (a job's hash), <prefix>jobs:<queue>:<part> (ready, delayed, running,
-- failed), <prefix>jobs:queues (the queue names) and <prefix>jobs:seq (enqueue order).
-- Ready jobs sit in one zset, all scores 0, as members "<rank>|<id>": ZPOPMIN takes the
-- lexicographically smallest, and a rank (hex digits only) sorts by priority (higher
-- first), due time, then enqueue order (see _queue_codec.py).
local PREFIX = ARGV[1]

local function job_key(id) return PREFIX .. 'job:' .. id end
local function queue_key(queue, part) return PREFIX .. 'jobs:' .. queue .. ':' .. part end

-- The server's clock, in POSIX seconds: due times and leases compare against it.
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- A score as Redis reads it back exactly (tostring keeps only 14 digits).
local function score(x) return string.format('%.17g', x) end

local function make_ready(key, queue, id, rank)
  redis.call('ZADD', queue_key(queue, 'ready'), 0, rank .. '|' .. id)
  redis.call('HSET', key, 'state', 'ready')
end

-- Store a new job (fields: id, queue, payload, due, due key, priority, priority key,
-- tries, correlation ID or '', 1 when there is one), ready or delayed by the clock.
-- A job whose ID is stored already (waiting, running or failed) is left alone.
local function add_job(f, clock)
  local id, queue = f[1], f[2]
  local key = job_key(id)
  if redis.call('EXISTS', key) == 1 then return end
  local seq = string.format('%016x', redis.call('INCR', PREFIX .. 'jobs:seq'))
  local rank = f[7] .. f[5] .. seq
  redis.call('HSET', key, 'id', id, 'queue', queue, 'payload', f[3], 'due', f[4],
    'priority', f[6], 'prank', f[7], 'seq', seq, 'rank', rank, 'tries', f[8],
    'attempts', 0)
  if f[10] == '1' then redis.call('HSET', key, 'cid', f[9]) end
  redis.call('SADD', PREFIX .. 'jobs:queues', queue)
  if tonumber(f[4]) > clock then
    redis.call('ZADD', queue_key(queue, 'delayed'), f[4], id)
    redis.call('HSET', key, 'state', 'delayed')
  else
    make_ready(key, queue, id, rank)
  end
end

-- The job's key when ``worker`` holds it (running, in ``queue``), else nil.
local function held(queue, worker, id)
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'queue', 'state', 'worker')
  if f[1] == queue and f[2] == 'running' and f[3] == worker then return key end
  return nil
end

-- The lease ends: out of the running set, no worker.
local function unlease(key, queue, id)
  redis.call('ZREM', queue_key(queue, 'running'), id)
  redis.call('HDEL', key, 'worker')
end

-- Remove a failed job (its hash and its place in the failed set); false when the ID is
-- not a failed job.
local function drop_failed(id)
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'queue', 'state')
  if f[2] ~= 'failed' then return false end
  redis.call('ZREM', queue_key(f[1], 'failed'), id)
  redis.call('DEL', key)
  return true
end

-- Lease the ready job of ready-set member ``member`` (``<rank>|<id>``, popped already)
-- to ``worker`` until ``deadline`` in the ``running`` set, counting its attempt; append
-- id, payload, due, priority, tries, correlation ID and attempt to ``reply``. A member
-- whose hash is gone is skipped.
local function lease_member(member, worker, running, deadline, reply)
  local id = string.sub(member, string.find(member, '|', 1, true) + 1)
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'payload', 'due', 'priority', 'tries', 'cid')
  if not f[1] then return end
  local attempt = redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'state', 'running', 'worker', worker)
  redis.call('ZADD', running, deadline, id)
  reply[#reply + 1] = id
  for j = 1, 5 do reply[#reply + 1] = f[j] end
  reply[#reply + 1] = attempt
end
