-- A batch starts. KEYS[1]: the batches hash of the group on the topic (partition ->
-- "start:end" of the last batch begun there). ARGV: partition, start, end, ... Returns
-- partition, end, ... for each partition whose last batch covered this start and never
-- committed (a consumer died in it): those keep their batch; the others record this one.
local redelivered = {}
for i = 1, #ARGV, 3 do
  local earlier = redis.call('HGET', KEYS[1], ARGV[i])
  local start = tonumber(ARGV[i + 1])
  local repeated = false
  if earlier then
    local from, to = string.match(earlier, '^(%d+):(%d+)$')
    if from and tonumber(from) <= start and start < tonumber(to) then
      redelivered[#redelivered + 1] = ARGV[i]
      redelivered[#redelivered + 1] = to
      repeated = true
    end
  end
  if not repeated then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1] .. ':' .. ARGV[i + 2])
  end
end
return redelivered
