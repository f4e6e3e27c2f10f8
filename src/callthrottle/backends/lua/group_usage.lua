-- Python twin: MemoryBackend.group_usage (backends/memory.py).
-- Live leases and live waiters of one group, and the cap set at run time (read only).
-- KEYS[1] the group's holders (GH), KEYS[2] its waiters (GW), KEYS[3] its policy (GP)
-- Returns {in_use, waiting, cap set at run time or -1}.
local now = now_ms()
return {
  redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf') - settle_group(KEYS[1], now, false),
  redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf'),
  tonumber(redis.call('HGET', KEYS[3], 'cap')) or -1,
}
