-- include: _queue_lib.lua
-- WorkQueue.depth (reads only). KEYS: the queue names. ARGV: prefix, then the queue
-- (none: every queue). Returns per queue that has jobs: name, ready (with the delayed
-- ones due already), delayed, running, failed, the number of workers, then worker
-- name and count for each.
local clock = score(now())
local queues = {ARGV[2]}
if #ARGV < 2 then queues = redis.call('SMEMBERS', KEYS[1]) end
local reply = {}
for _, queue in ipairs(queues) do
  local delayed = redis.call('ZCARD', queue_key(queue, 'delayed'))
  local due = redis.call('ZCOUNT', queue_key(queue, 'delayed'), '-inf', clock)
  local ready = redis.call('ZCARD', queue_key(queue, 'ready')) + due
  local failed = redis.call('ZCARD', queue_key(queue, 'failed'))
  local running = redis.call('ZRANGE', queue_key(queue, 'running'), 0, -1)
  if ready + delayed + failed + #running > 0 then
    local counts, names = {}, {}
    for _, id in ipairs(running) do
      local worker = redis.call('HGET', job_key(id), 'worker')
      if not counts[worker] then
        counts[worker] = 0
        names[#names + 1] = worker
      end
      counts[worker] = counts[worker] + 1
    end
    local row = {queue, ready, delayed - due, #running, failed, #names}
    for _, worker in ipairs(names) do
      row[#row + 1] = worker
      row[#row + 1] = counts[worker]
    end
    for _, value in ipairs(row) do reply[#reply + 1] = value end
  end
end
return reply
