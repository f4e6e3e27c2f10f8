-- Python twin: MemoryBackend.abandon (backends/memory/_slots.py).
-- Drop an owner's token from the line and give back any slot it was granted (one round trip).
-- KEYS: H Q W M P R C, then the group keys (see _common.lua)
-- ARGV[1] token, ARGV[2] owner, ARGV[3] number, ARGV[4] channel prefix
-- Returns 1 if the token held a slot, 0 otherwise.
local token = ARGV[1]
local now = now_ms()
local held = 0
purge(now)  -- a lease that lapsed meanwhile is recorded as expired (see mark_lapsed)
local raw = redis.call('HGET', M, token)
leave_groups(ARGV[2], ARGV[3], token, ARGV[4], now)
if raw and parse_meta(raw) == ARGV[2] then
  held = redis.call('ZREM', H, token)
  redis.call('ZREM', Q, token)
  redis.call('ZREM', W, token)
  redis.call('HDEL', M, token)
  redis.call('SREM', sessions_set(), token)
end
local queued = purge(now)
queued = promote(now, queued, ARGV[3], ARGV[4])
touch(now, queued)
return held
