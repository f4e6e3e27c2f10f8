-- Python twin: MemoryBackend.published_policy and MemoryBackend.policy_history
-- (backends/memory/_published.py).
-- flags: no-writes
-- The policy in force and the versions it replaced (see policy_publish.lua).
-- KEYS[1] D, KEYS[2] DH (as policy_publish.lua)
-- ARGV[1] how many replaced versions to read (0: none)
-- Returns {version, digest, at, by, comment, document} ({} when none was ever published), then
-- the replaced versions, newest first, each as DH holds it.
local D, DH = KEYS[1], KEYS[2]
local reply = redis.call('HMGET', D, 'version', 'digest', 'at', 'by', 'comment', 'document')
if not reply[1] then return {} end
local count = tonumber(ARGV[1])
if count > 0 then
  for _, entry in ipairs(redis.call('LRANGE', DH, 0, count - 1)) do
    reply[#reply + 1] = entry
  end
end
return reply
