-- Python twin: MemoryBackend.get_policy (backends/memory/_policy.py).
-- flags: no-writes (registered read only: the server refuses any write it would make)
-- A number's runtime policy, with the server's clock (read only).
-- KEYS: H Q W M P R C, then the group keys (see _common.lua)
-- ARGV: none
-- Returns {now_ms, field, value, field, value, ...}.
-- A carrier reaction that lapsed is left out (set_policy drops it at the next change, or P
-- expires with it): a lapsed cool-down reads as no state, with no reason.
local now = now_ms()
local all = redis.call('HGETALL', P)
local fields = {}
for i = 1, #all, 2 do fields[all[i]] = all[i + 1] end
local lapsed = {}
local luntil = tonumber(fields.luntil)
if luntil and luntil <= now then lapsed.lcap, lapsed.luntil = true, true end
local untl = tonumber(fields['until'])
if fields.state == 'cooling' and untl and untl <= now then
  lapsed.state, lapsed.reason, lapsed['until'] = true, true, true
end
local result = {now}
for i = 1, #all, 2 do
  if not lapsed[all[i]] then
    result[#result + 1] = all[i]
    result[#result + 1] = all[i + 1]
  end
end
return result
