-- Python twin: MemoryBackend.oldest_wait (backends/memory/_views.py).
-- flags: no-writes (registered read only: the server refuses any write it would make)
-- How long the longest-waiting live caller in the number's line has waited (read only).
-- KEYS: H Q W M P R C, then the group keys (see _common.lua)
-- ARGV: none
-- Returns its wait in ms (from the "since" of its meta: when it queued), -1 when nobody waits.
local now = now_ms()
local oldest = -1
for _, token in ipairs(redis.call('ZRANGEBYSCORE', W, '(' .. now, '+inf')) do
  local since = select(6, parse_meta(redis.call('HGET', M, token) or ''))
  if since and since > 0 then oldest = math.max(oldest, now - since) end
end
return oldest
