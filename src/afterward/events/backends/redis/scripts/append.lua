-- Appends several records at once (one record is a single XADD, no script).
-- KEYS: the streams. ARGV: per record, its stream's index in KEYS, event ID, timestamp,
-- payload. '0-*' lets Redis number the entries densely: 0-<offset + 1>.
for i = 1, #ARGV, 4 do
  redis.call('XADD', KEYS[tonumber(ARGV[i])], '0-*',
             'id', ARGV[i + 1], 'ts', ARGV[i + 2], 'payload', ARGV[i + 3])
end
return 1
