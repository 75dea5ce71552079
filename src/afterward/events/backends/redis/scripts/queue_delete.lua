-- include: _queue_lib.lua
-- FailedJobStore.delete_failed_job. KEYS: the queue names (declared for routing).
-- ARGV: prefix, the failed job's ID. Returns 1, or 0 when there was no such failed job.
if drop_failed(ARGV[2]) then return 1 end
return 0
