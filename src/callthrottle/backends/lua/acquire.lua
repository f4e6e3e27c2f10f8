-- Take a slot for a token, or queue it (one round trip).
-- KEYS: H Q W M P R (see _common.lua)
-- ARGV[1] token, ARGV[2] owner, ARGV[3] limit, ARGV[4] ttl_ms, ARGV[5] max_hold_ms (0: none),
-- ARGV[6] enqueue (1/0), ARGV[7] number, ARGV[8] channel prefix, ARGV[9] rate windows (see
-- parse_windows; '' for none), ARGV[10] time zone offset in ms (for calendar days),
-- ARGV[11] warm-up daily caps by week ("10,20,30"; '' for none), ARGV[12] '1' if the warm-up's
-- days start at local midnight
-- Returns {outcome, retry_in_ms}: outcome 1 granted, 0 queued, 2 refused (full), -1 token
-- conflict; {4, retry_in_ms, amount, window_ms, calendar} when a rate window is full (nothing
-- is written, and a queued token leaves the line); {3, retry_in_ms, state, reason} when the
-- number's state admits no calls (retry_in_ms: the end of a cool-down, -1 if none).
local token, owner = ARGV[1], ARGV[2]
local limit, ttl, hold = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local tz_ms = tonumber(ARGV[10])
local now = now_ms()
local pol = policy()
local state = unavailable(pol, now)
if state then
  local untl = tonumber(pol[4])
  return {3, untl and (untl - now) or -1, state, pol[3] or ''}
end
limit = cap_in_force(pol, limit, now)
local windows = windows_in_force(pol, ARGV[9], ARGV[11], ARGV[12], now)
local flags = (#windows > 0) and 'r' or ''

local function rate_limited(refusal)
  local w = refusal[2]
  return {4, refusal[1], w[1], w[2], w[3] and 1 or 0}
end
local queued = purge(now)
if queued > 0 then queued = promote(now, queued, ARGV[7], ARGV[8]) end

local function grant()
  local expires, deadline = now + ttl, 0
  if hold > 0 then
    deadline = now + hold
    if deadline < expires then expires = deadline end
  end
  redis.call('ZADD', H, expires, token)
  redis.call('HSET', M, token, meta(owner, ttl, deadline, limit, flags))
  if #windows > 0 then rate_hit(windows, now, token) end
end

local raw = redis.call('HGET', M, token)
if raw then
  local other, wttl = parse_meta(raw)
  if other ~= owner then return {-1, -1} end
  if redis.call('ZSCORE', H, token) then
    touch(now, queued)
    return {1, -1}
  end
  -- Queued. First in line with a slot free: take it, if the rate windows allow.
  if redis.call('ZRANK', Q, token) == 0 and redis.call('ZCARD', H) < limit then
    local refusal = rate_refusal(windows, now, tz_ms)
    redis.call('ZREM', Q, token)
    redis.call('ZREM', W, token)
    redis.call('HDEL', M, token)
    if refusal then
      queued = promote(now, queued - 1, ARGV[7], ARGV[8])
      touch(now, queued)
      return rate_limited(refusal)
    end
    grant()
    touch(now, queued - 1)
    return {1, -1}
  end
  redis.call('ZADD', W, now + wttl, token)
  touch(now, queued)
  return {0, retry_in(now)}
end

if #windows > 0 then
  local refusal = rate_refusal(windows, now, tz_ms)
  if refusal then
    touch(now, queued)
    return rate_limited(refusal)
  end
end

if queued == 0 and redis.call('ZCARD', H) < limit then
  grant()
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
redis.call('HSET', M, token, meta(owner, ttl, hold, limit, flags))
touch(now, queued + 1)
return {0, retry_in(now)}
