-- Python twin: MemoryBackend.set_group_policy (backends/memory/_policy.py).
-- Change a group's runtime policy, then wake its waiters to ask again (one round trip).
-- KEYS[1] GH: the group's holders, KEYS[2] GW: its waiters, KEYS[3] GP: its policy
-- ARGV[1] channel prefix, ARGV[2..] field value pairs: (field, value): cap, rates; value ''
-- deletes the field.
-- Returns 1.
local now = now_ms()
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[3], ARGV[i])
  else
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
end
nudge_group(KEYS[2], ARGV[1], 1000, now)
return 1
