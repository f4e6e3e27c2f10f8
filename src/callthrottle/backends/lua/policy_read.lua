-- Python twin: MemoryBackend.published_policy and MemoryBackend.policy_history
-- (backends/memory/_published.py).
-- flags: no-writes
-- The policy in force and the versions it replaced (see policy_publish.lua).
-- KEYS[1] D, KEYS[2] DH (as policy_publish.lua)
-- ARGV[1] how many replaced versions to read (0: none), ARGV[2] newer than: the stamp of the
-- caller's policy (0: none); the document is read only when the policy in force is newer
-- Returns {} when none was ever published (or none newer than the caller's), else D, then
-- the replaced versions, newest first, as DH holds them.
local newer_than = tonumber(ARGV[2] or '0')
if newer_than > 0 then
  -- The header alone ("version\tdigest\tstamp\t..."): a document of thousands of numbers
  -- is not copied to tell that it is the caller's.
  local head = redis.call('GETRANGE', KEYS[1], 0, 127)
  local stamp = tonumber(string.match(head, '^%d+\t[^\t]*\t(%d+)\t') or '0')
  if stamp <= newer_than then return {} end
end
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
