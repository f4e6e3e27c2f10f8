-- Python twin: MemoryBackend.set_group_policy (backends/memory.py).
-- Change a group's runtime policy, then wake its waiters to ask again (one round trip).
-- KEYS[1] the group's holders (GH), KEYS[2] its waiters (GW), KEYS[3] its policy (GP)
-- ARGV[1] channel prefix, then (field, value) pairs: cap, rates; value '' deletes the field.
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
