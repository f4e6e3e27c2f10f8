-- Python twin: MemoryBackend.group_usage (backends/memory/_views.py).
-- flags: no-writes (registered read only: the server refuses any write it would make)
-- Live leases and live waiters of one group, and the cap set at run time (read only).
-- KEYS[1] GH: the group's holders, KEYS[2] GW: its waiters, KEYS[3] GP: its policy
-- ARGV: none
-- Returns {in_use, waiting, cap set at run time or -1}.
local now = now_ms()
return {
  redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf') - settle_group(KEYS[1], now, false),
  redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf'),
  tonumber(redis.call('HGET', KEYS[3], 'cap')) or -1,
}
