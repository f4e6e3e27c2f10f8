-- Take a slot for a token, or queue it (one round trip).
-- KEYS: H Q W M P (see _common.lua)
-- ARGV[1] token, ARGV[2] owner, ARGV[3] limit, ARGV[4] ttl_ms, ARGV[5] max_hold_ms (0: none),
-- ARGV[6] enqueue (1/0), ARGV[7] number, ARGV[8] channel prefix
-- Returns {outcome, retry_in_ms}: outcome 1 granted, 0 queued, 2 refused, -1 token conflict;
-- or {3, retry_in_ms, state, reason} when the number's state admits no calls (retry_in_ms: the
-- end of a cool-down, -1 if none).
local token, owner = ARGV[1], ARGV[2]
local limit, ttl, hold = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local pol = policy()
local state = unavailable(pol, now)
if state then
  local untl = tonumber(pol[4])
  return {3, untl and (untl - now) or -1, state, pol[3] or ''}
end
limit = cap_in_force(pol, limit, now)
local queued = purge(now)
if queued > 0 then queued = promote(now, queued, ARGV[7], ARGV[8]) end

local raw = redis.call('HGET', M, token)
if raw then
  local other, wttl = parse_meta(raw)
  if other ~= owner then return {-1, -1} end
  if redis.call('ZSCORE', H, token) then
    touch(now, queued)
    return {1, -1}
  end
  redis.call('ZADD', W, now + wttl, token)
  touch(now, queued)
  return {0, retry_in(now)}
end

if queued == 0 and redis.call('ZCARD', H) < limit then
  local expires, deadline = now + ttl, 0
  if hold > 0 then
    deadline = now + hold
    if deadline < expires then expires = deadline end
  end
  redis.call('ZADD', H, expires, token)
  redis.call('HSET', M, token, meta(owner, ttl, deadline, limit))
  touch(now, 0)
  return {1, -1}
end

if ARGV[6] ~= '1' then
  touch(now, queued)
  return {2, retry_in(now)}
end
local seq = 1
local tail = redis.call('ZRANGE', Q, -1, -1, 'WITHSCORES')
if #tail > 0 then seq = tonumber(tail[2]) + 1 end
redis.call('ZADD', Q, seq, token)
redis.call('ZADD', W, now + ttl, token)
redis.call('HSET', M, token, meta(owner, ttl, hold, limit))
touch(now, queued + 1)
return {0, retry_in(now)}
