-- Python twin: MemoryBackend.pool_leave (backends/memory/_pools.py).
-- A caller gives up waiting on a pool (timed out, cancelled); the next in line is told when
-- the caller was first.
-- KEYS: PM (see pick.lua; the line's keys are built from it)
-- ARGV[1] owner, ARGV[2] token, ARGV[3] channel prefix, ARGV[4] pool name
-- Returns 1.
leave_pool_line(string.sub(KEYS[1], 1, -2), ARGV[1] .. '\t' .. ARGV[2], ARGV[3], ARGV[4])
return 1
