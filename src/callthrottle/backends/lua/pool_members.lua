-- Python twin: MemoryBackend.pool_members (backends/memory/_pools.py).
-- flags: no-writes (registered read only: the server refuses any write it would make)
-- A pool's numbers, in their round-robin order (read only).
-- KEYS: PM PL PO (see pick.lua)
-- ARGV: none
-- Returns the numbers.
return redis.call('ZRANGE', KEYS[3], 0, -1)
