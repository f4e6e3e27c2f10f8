-- Python twin: MemoryBackend.usage (backends/memory/_views.py).
-- flags: no-writes (registered read only: the server refuses any write it would make)
-- Live leases and live waiters of one number, and the cap in force (read only).
-- KEYS: H Q W M P R C, then the group keys (see _common.lua)
-- ARGV[1] limit: the caller's cap
-- Returns {in_use, waiting, cap}.
local now = now_ms()
return {
  redis.call('ZCOUNT', H, '(' .. now, '+inf') - lapsed_session_leases(now),
  redis.call('ZCOUNT', W, '(' .. now, '+inf'),
  cap_in_force(policy(), tonumber(ARGV[1]), now),
}
