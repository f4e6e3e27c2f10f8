-- Python twin: MemoryBackend.set_policy (backends/memory/_policy.py).
-- Change a number's runtime policy, then let the line move under it (one round trip).
-- KEYS: H Q W M P R C, then the group keys (see _common.lua)
-- ARGV[1] number, ARGV[2] channel prefix, ARGV[3..] field value pairs: (field, value); value
-- '' deletes the field; the pseudo-field 'reaction' marks a carrier's reaction (see below).
-- A value of the form '+<ms>' (until, luntil) is made absolute by the server clock, and 'now'
-- (since) is the server's time.
-- Waiters are granted at once if the cap went up, and nudged to ask again (a number that no
-- longer admits calls then refuses them).
-- Returns the policy as it is now: {field, value, field, value, ...}.

-- A carrier's reaction (a cap lowered until luntil; a cool-down: state 'cooling' with its reason
-- until `until`) lasts a while; anything else an operator sets lasts for good. Lapsed
-- reactions are dropped; then P lives as long as its latest reaction when nothing else is in
-- it (so an idle number leaves nothing behind), and for good otherwise. (The memory backend
-- drops them the same way: _Policy.drop_lapsed.)
local function keep_policy(now)
  local all = redis.call('HGETALL', P)
  local fields = {}
  for i = 1, #all, 2 do fields[all[i]] = all[i + 1] end
  local lapses = 0
  local luntil = tonumber(fields.luntil)
  if fields.lcap and luntil then
    if luntil <= now then redis.call('HDEL', P, 'lcap', 'luntil') end
    lapses = luntil
    fields.lcap, fields.luntil = nil, nil
  end
  local untl = tonumber(fields['until'])
  if fields.state == 'cooling' and untl then
    if untl <= now then redis.call('HDEL', P, 'state', 'reason', 'until') end
    if untl > lapses then lapses = untl end
    fields.state, fields.reason, fields['until'] = nil, nil, nil
  end
  if next(fields) then
    redis.call('PERSIST', P)
  elseif lapses > now then
    redis.call('PEXPIRE', P, lapses - now)
  end
end

local now = now_ms()
-- Lapsed reactions go first: nothing of them survives the change (a state set over a lapsed
-- cool-down keeps neither its reason nor its end).
keep_policy(now)
-- A carrier's reaction (field 'reaction') leaves alone a state an operator set for good that
-- keeps the number from admitting calls (flagged, disabled, ...): the number stays out of
-- service, rather than coming back when the reaction's cool-down ends.
local for_good = false
for i = 3, #ARGV, 2 do
  if ARGV[i] == 'reaction' then
    -- Read here, not through policy(): that one is kept for the call, and the fields change.
    local state, untl = unpack(redis.call('HMGET', P, 'state', 'until'))
    for_good = unavailable({false, state, false, untl}, now) ~= nil and state ~= 'cooling'
  end
end
local STATE_FIELDS = {state = true, reason = true, ['until'] = true, since = true}
for i = 3, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  if field == 'reaction' or (for_good and STATE_FIELDS[field]) then
    -- not a field of the policy; or a state set for good, kept
  elseif value == '' then
    redis.call('HDEL', P, field)
  else
    if string.sub(value, 1, 1) == '+' then value = int(now + tonumber(string.sub(value, 2))) end
    if value == 'now' then value = int(now) end
    redis.call('HSET', P, field, value)
  end
end
keep_policy(now)
local queued = promote(now, purge(now), ARGV[1], ARGV[2])
if queued > 0 then
  local line = redis.call('ZRANGE', Q, 0, -1)
  for _, token in ipairs(line) do
    local owner = parse_meta(redis.call('HGET', M, token))
    redis.call('SPUBLISH', ARGV[2] .. owner, 'n\t' .. ARGV[1] .. '\t' .. token)
  end
end
-- Callers waiting for a slot of the number's groups are told too (a number that no longer
-- admits calls refuses them, and they leave the group's line).
for i = 1, GROUPS do
  local _, _, gw = group_keys(i)
  purge_group_line(gw, now)
  for _, m in ipairs(redis.call('ZRANGE', group_line(gw), 0, -1)) do
    local owner, number, token = string.match(m, '^(.-)\t(.-)\t(.*)$')
    if number == ARGV[1] then
      redis.call('SPUBLISH', ARGV[2] .. owner, 'n\t' .. number .. '\t' .. token)
    end
  end
end
touch(now, queued)
return redis.call('HGETALL', P)
