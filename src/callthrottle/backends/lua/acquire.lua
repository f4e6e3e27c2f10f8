-- Python twin: MemoryBackend.acquire (backends/memory/_acquire.py).
-- Take a slot for a token, or queue it (one round trip).
-- KEYS: H Q W M P R C, then the group keys, then S, the policy stamp (see _common.lua)
-- ARGV[1] token, ARGV[2] owner (or "owner\t<session record key>": a session lease, see
-- _common.lua), ARGV[3] limit, ARGV[4] ttl_ms, ARGV[5] max_hold_ms (0: none),
-- ARGV[6] enqueue (1/0), ARGV[7] number, ARGV[8] channel prefix, ARGV[9] the stamp of the
-- published policy the caller decided with (0: none; see policy_stale); optional (a request
-- with no rate windows, callee or group sends none of them, and takes the hot path):
-- ARGV[10] rate windows (see parse_windows; '' for none),
-- ARGV[11] time zone offset in ms (for calendar days),
-- ARGV[12] warm-up daily caps by week ("10,20,30"; '' for none),
-- ARGV[13] midnight: '1' if the warm-up's days start at local midnight,
-- ARGV[14] callee windows: the callee's rate windows ('' for none: then C is not touched),
-- ARGV[15..] per group, four values: its configured cap ('' for none), the part of it kept in
-- reserve for calls of priority 1 or more, its configured rate windows, its name (for the
-- reply); then, after the groups, '1' if the call may take the groups' reserves (priority 1
-- or more). A group's cap or windows set at run time (GP) replace its configured ones.
-- Returns {outcome, retry_in_ms}: outcome 1 granted, 0 queued, 2 refused (full), -1 token
-- conflict; {4, retry_in_ms, amount, window_ms, calendar, 'n', 'c' or a group's name} when a
-- rate window of the number, the callee or a group is full (nothing is written, and a queued
-- token leaves the line); {5, retry_in_ms, group name, cap} when a group is full (the caller
-- waits for a group slot, when enqueue, without a place in the number's line); {3,
-- retry_in_ms, state, reason} when the number's state admits no calls (retry_in_ms: the end of
-- a cool-down, -1 if none; a place the token had in a group's line goes); {0 or 2,
-- retry_in_ms, 'f'} when queued or refused while the fence holds every grant (see fenced);
-- {6, -1, stamp} when a newer policy than the caller's is published (nothing is written).
local stale = policy_stale(ARGV[9], KEYS[8 + 4 * GROUPS])
if stale then return {6, -1, stale} end
local token = ARGV[1]
local owner, skey = split_owner(ARGV[2])
local limit, ttl, hold = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local tz_ms = tonumber(ARGV[11] or '0')
local now = now_ms()

-- A reply, after which a session whose acquire was granted or queued is kept alive (an
-- acquire in the session speaks for it).
local function told(reply)
  if skey ~= '' and (reply[1] == 1 or reply[1] == 0) then
    keep_session(record_of(skey), owner, ttl, now)
  end
  return reply
end
local pol = policy()
local state = unavailable(pol, now)
if state then
  -- A token that holds a live slot already (an acquire sent again after its reply was lost,
  -- the number disabled meanwhile) is told so, as on the paths below: its call is up.
  local expiry = tonumber(redis.call('ZSCORE', H, token))
  if expiry and lapse_of(expiry, redis.call('HGET', M, token)) > now then
    return told({parse_meta(redis.call('HGET', M, token)) == owner and 1 or -1, -1})
  end
  -- Refused for good: a place it had in a group's line goes (the next there is told).
  for i = 1, GROUPS do
    local _, _, gw = group_keys(i)
    leave_group_line(gw, member(owner, ARGV[7], token), ARGV[8], now)
  end
  local untl = tonumber(pol[4])
  return {3, untl and (untl - now) or -1, state, pol[3] or ''}
end
-- A waiter keeps the cap it asked for (the one in force is worked out when a slot frees).
local asked = limit
limit = cap_in_force(pol, limit, now)
-- The server may have lost leases of calls still up (see fenced): nothing is granted until
-- their holders had the time to count them again; a waiter keeps its place meanwhile.
local fence = fenced(now, ttl, fence_mark(H))
if fence then limit = 0 end

-- The hot path: no rate window, callee or group; nobody waiting; a slot free. Leases that
-- expired unnoticed only make the number look fuller here: the full path below settles them.
local plain = #ARGV <= 9 and GROUPS == 0 and not pol[7]
local waiting = plain and redis.call('ZCARD', Q) or nil  -- (the line, when read here)
if plain and waiting == 0 then
  local holding = redis.call('ZCARD', H)
  if holding < limit then
    local expires, deadline = lease_times(ttl, hold, skey, now)
    if redis.call('ZADD', H, 'NX', expires, token) == 1 then
      local n = grant_life(owner, skey, ttl, now)
      redis.call('HSET', M, token, meta(owner, ttl, deadline, asked, '', now, skey, n))
      forget_ended(owner, token)
      cover(expires, now, holding == 0, holding == 0, ttl)
      hold_for_session(token, skey, ttl, expires, now)
      return told({1, -1})
    end
    -- The token is known already: the full path tells a repeat from a conflict.
  end
end
-- Queued (0) or refused (2): when to ask again, and 'f' while the fence holds grants.
local function wait_reply(outcome)
  local reply = {outcome, retry_in(now)}
  if fence then reply[3] = 'f' end
  return reply
end
local windows = windows_in_force(pol, ARGV[10] or '', ARGV[12] or '', ARGV[13], now)
local callee_windows = parse_windows(ARGV[14] or '')
local groups = {}
local reserved = ARGV[15 + 4 * GROUPS] == '1'  -- the call may take the groups' reserves
for i = 1, GROUPS do
  local at = 15 + (i - 1) * 4
  local gh, gr, gw, gp = group_keys(i)
  local set = redis.call('HMGET', gp, 'cap', 'rates')
  local cap = tonumber(set[1]) or tonumber(ARGV[at])
  local reserve = tonumber(ARGV[at + 1])
  -- {holders, rate log, line, cap in force (its reserve included), windows, name, reserve}
  groups[i] = {gh, gr, gw, cap, parse_windows(set[2] or ARGV[at + 2]), ARGV[at + 3], reserve}
end
-- 'r': never handed a slot without asking (promote): its windows are checked then; a
-- session's waiter claims its slot itself too (one that died never asks: no slot is kept for
-- it as long as its session lives).
local flags = (#windows > 0 or #callee_windows > 0 or GROUPS > 0 or skey ~= '') and 'r' or ''
local me = member(owner, ARGV[7], token)

-- nil if the number's and the callee's windows all admit the call; else the reply to give.
local function rate_limited()
  local refusal = rate_refusal(R, windows, now, tz_ms)
  local whose = 'n'
  if not refusal and #callee_windows > 0 then
    refusal = rate_refusal(KEYS[7], callee_windows, now, tz_ms)
    whose = 'c'
  end
  for _, g in ipairs(groups) do
    if refusal then break end
    if #g[5] > 0 then
      refusal = rate_refusal(g[2], g[5], now, tz_ms)
      whose = g[6]
    end
  end
  if not refusal then return nil end
  local w = refusal[2]
  return {4, refusal[1], w[1], w[2], w[3] and 1 or 0, whose}
end
local queued = purge(now, waiting)  -- (nothing was written since the line was read)
if queued > 0 then queued = promote(now, queued, ARGV[7], ARGV[8]) end

local function grant()
  local expires, deadline = lease_times(ttl, hold, skey, now)
  local n = grant_life(owner, skey, ttl, now)
  redis.call('ZADD', H, expires, token)
  redis.call('HSET', M, token, meta(owner, ttl, deadline, asked, flags, now, skey, n))
  forget_ended(owner, token)
  hold_for_session(token, skey, ttl, expires, now)
  if #windows > 0 then rate_hit(R, windows, now, token) end
  if #callee_windows > 0 then rate_hit(KEYS[7], callee_windows, now, ARGV[7] .. ':' .. token) end
  for _, g in ipairs(groups) do
    redis.call('ZADD', g[1], expires, me)
    extend(g[1], expires - now + 1000)
    -- Out of the group's line; the next is told when a slot is still free for someone.
    leave_group_line(g[3], me, ARGV[8], now, g[4] and function()
      return redis.call('ZCARD', g[1]) < g[4]
    end)
    if #g[5] > 0 then rate_hit(g[2], g[5], now, ARGV[7] .. ':' .. token) end
  end
  return expires
end

-- The caller leaves the line of every group but the i-th (it waits in one line at a time, so
-- that two callers never each keep the slot the other waits for).
local function leave_group_lines(except)
  for i, g in ipairs(groups) do
    if i ~= except then leave_group_line(g[3], me, ARGV[8], now) end
  end
end

-- nil if every group has a slot for the call; else the reply to give (registering the caller
-- as a group waiter when it will wait). A slot is free for the caller only if the callers
-- ahead of it in the group's line leave one: a slot that frees is theirs first (see
-- group_has_room).
local function group_full(wait)
  for i, g in ipairs(groups) do
    if g[4] then
      redis.call('ZREMRANGEBYSCORE', g[1], '-inf', now)
      local in_use = redis.call('ZCARD', g[1])
      local room = group_has_room(g[3], me, g[4], g[7], in_use, reserved, now)
      -- Full: leases of lapsed sessions (on any number of the group) are dropped first.
      if not room and settle_group(g[1], now, true) > 0 then
        in_use = redis.call('ZCARD', g[1])
        room = group_has_room(g[3], me, g[4], g[7], in_use, reserved, now)
      end
      if not room then
        leave_group_lines(i)
        if wait then join_group_line(g[3], me, now, ttl, reserved and g[7] > 0) end
        local first = group_first_lapse(g[1])
        local retry = first and math.max(first - now, 0) or -1
        return {5, retry, g[6], reserved and g[4] or math.max(g[4] - g[7], 0)}
      end
    end
  end
  return nil
end

-- nil if the call may go ahead under every window and group; else the reply to give (a caller
-- refused by a window leaves every group's line: it asks again when the window has room).
local function refusal(wait)
  local refused = rate_limited()
  if refused then
    leave_group_lines(0)
    return refused
  end
  return group_full(wait)
end

local raw = redis.call('HGET', M, token)
if raw and not redis.call('ZSCORE', Q, token) and not redis.call('ZSCORE', H, token) then
  -- A waiter whose place lapsed with the line's keys (M outlives them: see X): asks anew.
  redis.call('HDEL', M, token)
  raw = false
end
if raw then
  local other, wttl = parse_meta(raw)
  if other ~= owner then return {-1, -1} end
  if redis.call('ZSCORE', H, token) then return told({1, -1}) end
  -- Queued. First in line with a slot free: take it, if the rate windows allow.
  local holding = redis.call('ZCARD', H)
  if redis.call('ZRANK', Q, token) == 0 and holding < limit then
    local refused = refusal(true)
    redis.call('ZREM', Q, token)
    redis.call('ZREM', W, token)
    if refused then
      redis.call('HDEL', M, token)
      promote(now, queued - 1, ARGV[7], ARGV[8])
      return refused
    end
    -- Its meta is written over by the lease's (deleting it first could delete M, which would
    -- then come back without an expiry).
    cover(grant(), now, holding == 0, false, ttl, true)
    -- The next in line is served (or told to ask) when a slot is still free for it.
    promote(now, queued - 1, ARGV[7], ARGV[8])
    return told({1, -1})
  end
  redis.call('ZADD', W, now + wttl, token)
  keep_line(wttl + 1000, false)
  return told(wait_reply(0))
end

if flags == 'r' then
  local refused = refusal(ARGV[6] == '1')
  if refused then return refused end
end

if queued == 0 then
  local holding = redis.call('ZCARD', H)
  if holding < limit then
    cover(grant(), now, holding == 0, holding == 0, ttl)
    return told({1, -1})
  end
end

if ARGV[6] ~= '1' then return wait_reply(2) end
leave_group_lines(0)  -- it waits in the number's line now
local seq = 1
local tail = redis.call('ZRANGE', Q, -1, -1, 'WITHSCORES')
if #tail > 0 then seq = tonumber(tail[2]) + 1 end
redis.call('ZADD', Q, seq, token)
redis.call('ZADD', W, now + ttl, token)
redis.call('HSET', M, token, meta(owner, ttl, hold, asked, flags, now, skey))
forget_ended(owner, token)
keep_line(ttl + 1000, queued == 0)
return told(wait_reply(0))
