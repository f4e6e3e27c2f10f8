-- Python twin: MemoryBackend.restore (backends/memory/_slots.py).
-- Count again a lease the server lost (a restart without persistence, a failover to a replica
-- that lacked it) while its call is still up. It is counted even past the cap, so that new
-- calls wait until the number really has room; it is not counted again in rate windows.
-- KEYS: H Q W M P R C, then the group keys (see _common.lua)
-- ARGV[1] token, ARGV[2] owner (as acquire's: "owner\t<session record key>" for a session
-- lease, which lives on with its session), ARGV[3] ttl_ms, ARGV[4] max_hold_ms left: what is
-- left of its max_hold (0: none), ARGV[5] limit: the cap it was taken under, ARGV[6] number,
-- ARGV[7] age_ms: how long ago it was taken
-- A lease ended for good (released, reset, released with its owner: see mark_ended) is not
-- counted again: its record says so while its holder may still try.
-- Returns 1 if counted again (or still held by this owner), 0 if the token is another's, -1 if
-- it was ended for good.
local token = ARGV[1]
local owner, skey = split_owner(ARGV[2])
local ttl, left = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
fenced(now, ttl, fence_mark(H))  -- a server that lost leases fences new grants (see fenced)
-- A lease that expired meanwhile (its holder was cut off longer than its ttl) may still be
-- listed: dropped first, so that it is counted again below rather than found "still held".
purge(now)
local raw = redis.call('HGET', M, token)
if raw then
  return (parse_meta(raw) == owner and redis.call('ZSCORE', H, token)) and 1 or 0
end
if was_ended(owner, token, now) then return -1 end
local fresh_h, fresh_m = redis.call('EXISTS', H) == 0, redis.call('EXISTS', M) == 0
local expires, deadline = lease_times(ttl, left, skey, now)
local n = grant_life(owner, skey, ttl, now)
redis.call('ZADD', H, expires, token)
local since = now - tonumber(ARGV[7] or '0')
local flags = (GROUPS > 0 or skey ~= '') and 'r' or ''
redis.call('HSET', M, token, meta(owner, ttl, deadline, ARGV[5], flags, since, skey, n))
hold_for_session(token, skey, ttl, expires, now)
local me = member(owner, ARGV[6], token)
for g = 1, GROUPS do
  local gh = group_keys(g)
  redis.call('ZADD', gh, expires, me)
  extend(gh, expires - now + 1000)
end
cover(expires, now, fresh_h, fresh_m, ttl, true)
return 1
