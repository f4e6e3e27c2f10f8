-- Python twin: MemoryBackend.renew (backends/memory/_slots.py).
-- Extend an owner's leases and keep its places in line alive, on one number.
-- KEYS: H Q W M P R C, then the group keys (see _common.lua)
-- ARGV[1] owner, ARGV[2] number, ARGV[3] channel prefix, ARGV[4] ttl_ms: the renewer's lease
-- TTL (for the fence: see fenced; 0 if unknown), ARGV[5..] tokens
-- Returns one state per token: 1 held (extended), 2 held up to its max_hold deadline (final),
-- 0 queued (kept), -1 gone, -2 gone while the fence holds (the server may have lost it: its
-- holder counts it again, whether or not its connection was replaced).
local owner = ARGV[1]
local now = now_ms()
local mark = fence_mark(H)
watch_for_loss(now, mark)  -- a server that lost leases fences new grants (see fenced)
local gone = fence_end(now, tonumber(ARGV[4]), mark) > now and -2 or -1
local queued = promote(now, purge(now), ARGV[2], ARGV[3])
local states = {}
for i = 5, #ARGV do
  local token = ARGV[i]
  local state = gone
  local raw = redis.call('HGET', M, token)
  if raw then
    local who, ttl, hold, _, _, _, skey = parse_meta(raw)
    if who == owner then
      if skey ~= '' and redis.call('ZSCORE', H, token) then
        state = 1  -- a session lease: its session keeps it (keepalive.lua), nothing to extend
      elseif redis.call('ZSCORE', H, token) then
        local expires = now + ttl
        state = 1
        if hold > 0 and hold <= expires then
          expires = hold
          state = 2
        end
        redis.call('ZADD', H, 'XX', expires, token)
        for g = 1, GROUPS do
          local gh = group_keys(g)
          redis.call('ZADD', gh, 'XX', expires, member(owner, ARGV[2], token))
          extend(gh, expires - now + 1000)
        end
      else
        redis.call('ZADD', W, 'XX', now + ttl, token)
        state = 0
      end
    end
  end
  states[#states + 1] = state
end
touch(now, queued)
return states
