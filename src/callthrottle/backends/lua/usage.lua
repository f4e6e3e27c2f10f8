-- Live leases and live waiters of one number (read only).
-- KEYS: H Q W M (see _common.lua)
-- Returns {in_use, waiting}.
local now = now_ms()
return {redis.call('ZCOUNT', H, '(' .. now, '+inf'), redis.call('ZCOUNT', W, '(' .. now, '+inf')}
