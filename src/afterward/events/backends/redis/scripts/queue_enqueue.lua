-- include: _queue_lib.lua
-- WorkQueue.enqueue. KEYS: the queue names, the enqueue counter (declared for routing;
-- the jobs' keys are built from the prefix). ARGV: prefix, then 10 fields per job (see
-- add_job). One script: all the jobs or none; an ID stored already is left alone.
local clock = now()
for i = 2, #ARGV, 10 do
  add_job({unpack(ARGV, i, i + 9)}, clock)
end
return 1
