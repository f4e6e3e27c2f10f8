-- Live leases and live waiters of one group (read only).
-- KEYS[1] the group's holders (GH), KEYS[2] its waiters (GW) (see _common.lua)
-- Returns {in_use, waiting}.
local now = now_ms()
return {redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf'), redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')}
