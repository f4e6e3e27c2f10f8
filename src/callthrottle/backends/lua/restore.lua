-- Count again a lease the server lost (a restart without persistence, a failover to a replica
-- that lacked it) while its call is still up. It is counted even past the cap, so that new
-- calls wait until the number really has room; it is not counted again in rate windows.
-- KEYS: as acquire.lua (its groups' keys included)
-- ARGV[1] token, ARGV[2] owner, ARGV[3] ttl_ms, ARGV[4] what is left of its max_hold in ms
-- (0: none), ARGV[5] the cap it was taken under, ARGV[6] number, ARGV[7] how long ago (ms) it
-- was taken
-- Returns 1 if counted again (or still held by this owner), 0 if the token is another's.
local token, owner = ARGV[1], ARGV[2]
local ttl, left = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
purge(now)  -- a lease that expired unnoticed is no longer held: it is counted again
local raw = redis.call('HGET', M, token)
if raw then
  return (parse_meta(raw) == owner and redis.call('ZSCORE', H, token)) and 1 or 0
end
local fresh_h, fresh_m = redis.call('EXISTS', H) == 0, redis.call('EXISTS', M) == 0
local expires, deadline = now + ttl, 0
if left > 0 then
  deadline = now + left
  if deadline < expires then expires = deadline end
end
redis.call('ZADD', H, expires, token)
local since = now - tonumber(ARGV[7] or '0')
redis.call('HSET', M, token, meta(owner, ttl, deadline, ARGV[5], GROUPS > 0 and 'r' or '', since))
local me = member(owner, ARGV[6], token)
for g = 1, GROUPS do
  local gh = group_keys(g)
  redis.call('ZADD', gh, expires, me)
  extend(gh, expires - now + 1000)
end
cover(expires, now, fresh_h, fresh_m)
return 1
