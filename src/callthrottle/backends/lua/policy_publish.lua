-- Python twin: MemoryBackend.publish_policy (backends/memory/_published.py).
-- Publish the carrier policy as its next version, if the version in force is still the one
-- the publisher read (two publishers never overwrite each other unseen).
-- KEYS[1] D   hash  the policy in force: version, digest, document, at (ms), by, comment
-- KEYS[2] DH  list  the versions it replaced, newest first: each "version\tdigest\tat\tby\t
--                   comment\tdocument"
-- KEYS[3] S   the policy stamp of D's slot (see policy_stale; a single server's only one)
-- ARGV[1] expected: the version in force the publisher read (0: none), ARGV[2] digest,
-- ARGV[3] document, ARGV[4] by, ARGV[5] comment, ARGV[6] kept: how many replaced versions
-- DH keeps.
-- The same publish sent again (the version after the expected one holds this digest, by and
-- comment) answers as it did.
-- Returns {1, version, at} when published (the stamp of D's slot is raised to it; the other
-- slots' stamps are the publisher's to raise), {0, version in force} when that is not the
-- expected one (nothing is written).
local D, DH, S = KEYS[1], KEYS[2], KEYS[3]
local now_in = redis.call('HMGET', D, 'version', 'digest', 'by', 'comment', 'at')
local current = tonumber(now_in[1]) or 0
local expected = tonumber(ARGV[1])
if current == expected + 1 and now_in[2] == ARGV[2] and now_in[3] == ARGV[4] and
    now_in[4] == ARGV[5] then
  -- This very publish, sent again (its reply was lost): answered as the first run was.
  return {1, current, tonumber(now_in[5])}
end
if current ~= expected then return {0, current} end
if current > 0 then
  local old = redis.call('HMGET', D, 'version', 'digest', 'at', 'by', 'comment', 'document')
  redis.call('LPUSH', DH, table.concat(old, '\t'))
  redis.call('LTRIM', DH, 0, tonumber(ARGV[6]) - 1)
end
local version, now = current + 1, now_ms()
redis.call('HSET', D, 'version', version, 'digest', ARGV[2], 'document', ARGV[3], 'at', now,
  'by', ARGV[4], 'comment', ARGV[5])
redis.call('ZADD', S, 'GT', version, 'v')
return {1, version, now}
