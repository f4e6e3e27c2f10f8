-- Python twin: MemoryBackend.holders (backends/memory/_views.py).
-- flags: no-writes (registered read only: the server refuses any write it would make)
-- The live leases of one number, the first to lapse first (read only).
-- KEYS: H Q W M P R C, then the group keys (see _common.lua)
-- ARGV: none
-- Returns {now, token, expiry, owner, ttl_ms, deadline, since, ...} (deadline 0: no max_hold;
-- since: when it was granted, 0 if unknown).
local now = now_ms()
local reply = {now}
local live = {}
for _, token in ipairs(redis.call('ZRANGEBYSCORE', H, '(' .. now, '+inf')) do
  local owner, ttl, hold, _, _, since, skey, n = parse_meta(redis.call('HGET', M, token) or '')
  local expiry = tonumber(redis.call('ZSCORE', H, token))
  if skey and skey ~= '' then  -- a session lease lives until its session's life ends
    expiry = math.min(expiry, life_end(skey, owner, n))
  end
  if expiry > now then
    live[#live + 1] = {token, expiry, owner or '', ttl or 0, hold or 0, since or 0}
  end
end
-- By when they lapse, then by token.
table.sort(live, function(a, b)
  if a[2] ~= b[2] then return a[2] < b[2] end
  return a[1] < b[1]
end)
for _, holder in ipairs(live) do
  for _, field in ipairs(holder) do reply[#reply + 1] = field end
end
return reply
