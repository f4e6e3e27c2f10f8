-- Python twin: MemoryBackend.holders (backends/memory.py).
-- The live leases of one number, oldest expiry first (read only).
-- KEYS: H Q W M P R (see _common.lua)
-- Returns {now, token, expiry, owner, ttl_ms, deadline, since, ...} (deadline 0: no max_hold;
-- since: when it was granted, 0 if unknown).
local now = now_ms()
local reply = {now}
local live = redis.call('ZRANGEBYSCORE', H, '(' .. now, '+inf', 'WITHSCORES')
for i = 1, #live, 2 do
  local token = live[i]
  local owner, ttl, hold, _, _, since, skey, n = parse_meta(redis.call('HGET', M, token) or '')
  local expiry = tonumber(live[i + 1])
  if skey and skey ~= '' then  -- a session lease lives until its session's life ends
    expiry = math.min(expiry, life_end(skey, owner, n))
  end
  if expiry > now then
    reply[#reply + 1] = token
    reply[#reply + 1] = expiry
    reply[#reply + 1] = owner or ''
    reply[#reply + 1] = ttl or 0
    reply[#reply + 1] = hold or 0
    reply[#reply + 1] = since or 0
  end
end
return reply
