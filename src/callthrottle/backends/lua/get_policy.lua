-- A number's runtime policy, with the server's clock (read only).
-- KEYS: H Q W M P R (see _common.lua)
-- Returns {now_ms, field, value, field, value, ...}.
local result = {now_ms()}
for _, item in ipairs(redis.call('HGETALL', P)) do result[#result + 1] = item end
return result
