-- Python twin: MemoryBackend.reset_number (backends/memory/_owners.py).
-- Drop every lease and place in line of one number (an operator's reset after a switch
-- crashed). Owners of live leases are told "released"; waiters are nudged to ask again (they
-- find the number empty). The number's runtime policy stays; the live leases are recorded as
-- ended for good (see mark_ended).
-- KEYS: H Q W M P R C, then the group keys (see _common.lua)
-- ARGV[1] number, ARGV[2] channel prefix
-- Returns {live leases removed, live waiters removed}.
local now = now_ms()
local number, channels = ARGV[1], ARGV[2]
local held, waiting = 0, 0
local events = {}
local all = redis.call('HGETALL', M)
for i = 1, #all, 2 do
  local token = all[i]
  local owner, ttl = parse_meta(all[i + 1])
  if owner then
    leave_groups(owner, number, token, channels, now)
    local expiry = tonumber(redis.call('ZSCORE', H, token))
    local lapse = tonumber(redis.call('ZSCORE', W, token))
    if expiry and lapse_of(expiry, all[i + 1]) > now then
      held = held + 1
      mark_ended(owner, token, ttl, now)
      events[#events + 1] = {owner, 'r\t' .. number .. '\t' .. token}
    elseif lapse and lapse > now and redis.call('ZSCORE', Q, token) then
      waiting = waiting + 1
      events[#events + 1] = {owner, 'n\t' .. number .. '\t' .. token}
    end
  end
end
redis.call('DEL', H, Q, W, M, sessions_set())
for _, event in ipairs(events) do
  redis.call('SPUBLISH', channels .. event[1], event[2])
end
return {held, waiting}
