-- Python twin: MemoryBackend.published_policy and MemoryBackend.policy_history
-- (backends/memory/_published.py).
-- flags: no-writes
-- The policy in force and the versions it replaced (see policy_publish.lua).
-- KEYS[1] D, KEYS[2] DH (as policy_publish.lua)
-- ARGV[1] how many replaced versions to read (0: none)
-- Returns {} when none was ever published, else D, then the replaced versions, newest first,
-- as DH holds them.
local raw = redis.call('GET', KEYS[1])
if not raw then return {} end
local reply = {raw}
local count = tonumber(ARGV[1])
if count > 0 then
  for _, entry in ipairs(redis.call('LRANGE', KEYS[2], 0, count - 1)) do
    reply[#reply + 1] = entry
  end
end
return reply
