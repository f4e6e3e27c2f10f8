-- Python twin: MemoryBackend.publish_policy (backends/memory/_published.py).
-- Publish the carrier policy as its next version, if the version in force is still the one
-- the publisher read (two publishers never overwrite each other unseen).
-- KEYS[1] D   string  the policy in force: "version\tdigest\tat_ms\tby\tcomment\tdocument"
--                     (no field but the document's JSON is free of tabs, and that has none)
-- KEYS[2] DH  list    the versions it replaced, newest first, each as D holds it
-- KEYS[3] S   the policy stamp of D's slot (see policy_stale; a single server's only one)
-- ARGV[1] expected: the version in force the publisher read (0: none), ARGV[2] digest,
-- ARGV[3] document, ARGV[4] by, ARGV[5] comment, ARGV[6] kept: how many replaced versions
-- DH keeps, ARGV[7] floor: the least stamp the new version may have (above a higher stamp
-- the publisher found on another slot: see below).
-- A version is numbered for people (1, 2, ...) and stamped for the fence (see policy_stale)
-- with its "at": when it was published (ms), above the stamp of D's slot and the floor. So a
-- server that lost the policy (not every stamp, or processes that still decide with the
-- lost version raise them again) stamps the policy published again above every one they
-- may still decide with: they are refused as stale, and take it.
-- The same publish sent again (the version in force, above the expected one, holds this
-- digest, by and comment) answers as it did.
-- Returns {1, version, at} when published (the stamp of D's slot is raised to its at; the
-- other slots' stamps are the publisher's to raise), {0, version in force} when that is not
-- the expected one (nothing is written).
local D, DH, S = KEYS[1], KEYS[2], KEYS[3]
local raw = redis.call('GET', D)
local current, digest, at, by, comment = 0, nil, nil, nil, nil
if raw then
  current, digest, at, by, comment =
    string.match(raw, '^(%d+)\t([^\t]*)\t(%d+)\t([^\t]*)\t([^\t]*)\t')
  current = tonumber(current)
end
local expected = tonumber(ARGV[1])
if current > expected and digest == ARGV[2] and by == ARGV[4] and comment == ARGV[5] then
  -- This very publish, sent again (its reply was lost): answered as the first run was.
  return {1, current, tonumber(at)}
end
if current ~= expected then return {0, current} end
if raw then
  redis.call('LPUSH', DH, raw)
  redis.call('LTRIM', DH, 0, tonumber(ARGV[6]) - 1)
end
local seen = tonumber(redis.call('ZSCORE', S, 'v')) or 0
local now = now_ms()
local stamp = math.max(now, seen + 1, tonumber(ARGV[7]))
redis.call('SET', D, table.concat({current + 1, ARGV[2], stamp, ARGV[4], ARGV[5], ARGV[3]}, '\t'))
raise_stamp(S, stamp, now)
return {1, current + 1, stamp}
