-- Python twin: MemoryBackend.keepalive (backends/memory/_sessions.py).
-- Keep a session alive: every lease of it (on every number whose leases name this record)
-- lives ttl ms more, never past its own deadline. The cost does not grow with the leases held:
-- one field of one hash. A session whose life ended starts a new one (the old life's leases
-- never count again); its field stays until the record expires with the last lease naming it.
-- KEYS[1] session record (hash: session name -> when it lapses, ms by the server clock)
-- ARGV[1] session name, ARGV[2] ttl_ms, ARGV[3] end (optional): '1' to end the session's life
-- now instead (release_owner, once its leases went)
-- Returns {when the session lapses now (ms, server clock), 1 while the fence holds (the server
-- may have lost the session's leases: its holders look for theirs), else 0}.
local record, session, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
local now = now_ms()
-- A server that lost leases fences new grants (see fenced); the record's prefix's marker:
-- "<prefix>sessions" on a single server, "<prefix>{tag}:sessions" on a Cluster.
local mark = string.find(record, '{', 1, true) and fence_mark(record)
  or (string.sub(record, 1, -9) .. 'fence')
local fence = fenced(now, ARGV[3] == '1' and 0 or ttl, mark)  -- (ending a life: no TTL)
if ARGV[3] == '1' then
  end_session(record, session, now)
else
  keep_session(record, session, ttl, now)
end
return {session_life(record, session)[1], fence and 1 or 0}
