-- Python twin: MemoryBackend.release (backends/memory/_slots.py).
-- Give a slot back and hand it to the next waiter (one round trip).
-- KEYS: H Q W M P R C, then the group keys (see _common.lua)
-- ARGV[1] token, ARGV[2] releasing owner, ARGV[3] number, ARGV[4] channel prefix,
-- ARGV[5] pool load key (optional): the load key (PL) of the pool the lease was picked from:
-- its load is updated and the first caller waiting on the pool is told;
-- ARGV[6] pool name (sent with the load key)
-- Returns {1 if a live lease was released, 2 if the lease had lapsed (expired, or its session
-- did: the call went on unprotected), 0 if there was none (never taken, released already),
-- then the tokens of the releasing owner's waiters that were handed a slot (they get no
-- event: the owner learns it from the reply)}.
local token = ARGV[1]
local now = now_ms()
-- Expired leases and lapsed waiters are dropped when someone waits (they decide who gets the
-- slot); otherwise they stay until the number looks full to an acquire, or their keys expire.
local queued = redis.call('ZCARD', Q)
if queued > 0 then queued = purge(now, queued) end
local removed = 0
local expiry = tonumber(redis.call('ZSCORE', H, token))
if expiry then
  redis.call('ZREM', H, token)
  local owner, ttl, _, _, _, _, skey, n = parse_meta(redis.call('HGET', M, token))
  redis.call('HDEL', M, token)
  if skey ~= '' then
    redis.call('SREM', sessions_set(), token)
    -- Its session lapsed: it no longer counted (its groups still list it: taken out now).
    if session_lapsed(owner, skey, n, now) then
      expiry = math.min(expiry, life_end(skey, owner, n))  -- when it lapsed
      leave_groups(owner, ARGV[3], token, ARGV[4], now)
    end
  end
  if expiry <= now then
    -- It had lapsed (only cleared away now): said so while it is remembered (see X), once
    -- (an earlier lease of the token that lapsed is told with it).
    removed = remembered(expiry, ttl, now) and 2 or 0
    redis.call('ZREM', lapsed_key(), token)
  else  -- a live lease
    removed = 1
    redis.call('ZREM', lapsed_key(), token)  -- an earlier lease of the token lapsed: not this one
    leave_groups(owner, ARGV[3], token, ARGV[4], now)
    if owner ~= ARGV[2] then
      -- Its holder may not hear of it (cut off): the record keeps it from counting it again.
      mark_ended(owner, token, ttl, now)
      redis.call('SPUBLISH', ARGV[4] .. owner, 'r\t' .. ARGV[3] .. '\t' .. token)
    elseif skey ~= '' then
      -- A session's other processes hear of it too (the one that took it may hold it still).
      redis.call('SPUBLISH', ARGV[4] .. owner, 'r\t' .. ARGV[3] .. '\t' .. token)
    end
  end
else
  -- It lapsed and was dropped since: said once (a second release finds nothing).
  local untl = tonumber(redis.call('ZSCORE', lapsed_key(), token))
  if untl then
    redis.call('ZREM', lapsed_key(), token)
    if untl > now then removed = 2 end
  end
end
if ARGV[5] then
  if redis.call('ZSCORE', ARGV[5], ARGV[3]) then
    -- Its new load, behind the numbers already at that load (PS: the pool's move counter).
    local moved = redis.call('INCR', string.sub(ARGV[5], 1, -2) .. 's') % LOAD_SCALE
    local live = live_leases(now)
    redis.call('ZADD', ARGV[5], live * LOAD_SCALE + moved, ARGV[3])
  end
  nudge_pool_line(string.sub(ARGV[5], 1, -2), ARGV[4], ARGV[6])
end
local reply = {removed}
if queued > 0 then promote(now, queued, ARGV[3], ARGV[4], ARGV[2], reply) end
return reply
