-- include: _queue_lib.lua
-- FailedJobStore.requeue_failed_job. KEYS: the queue names, the enqueue counter
-- (declared for routing). ARGV: prefix, the failed job's ID, then the new job's 10
-- fields (see add_job). Replaces the failed job by the new one (no attempts); returns
-- 1, or 0 when there was no such failed job.
if not drop_failed(ARGV[2]) then return 0 end
add_job({unpack(ARGV, 3, 12)}, now())
return 1
