-- Python twin: the helpers of MemoryBackend in backends/memory/ (_lines.py, _groups.py,
-- _records.py, _windows.py, _policy.py), each naming the function here it mirrors.
-- The library's shared part: defined once when the library is loaded, used by every function
-- (each function's body is in the file of its name).
--
-- One number's state lives in keys that share a hash tag (its tenant's, when it has one), so
-- every script touches one Cluster slot:
--   KEYS[1] H  sorted set  token -> lease expiry (ms, server clock)
--   KEYS[2] Q  sorted set  token -> place in line (FIFO sequence)
--   KEYS[3] W  sorted set  token -> when the waiter's place lapses (ms, server clock)
--   KEYS[4] M  hash        token -> "owner\tttl_ms\thold_ms\tlimit\tflags\tsince" (limit: the
--                          caller's own cap, before any runtime cap; flags: 'r'
--                          when the request has rate windows: it is never handed a slot
--                          without asking, so that its windows are checked; since: when it
--                          was granted, or queued, in ms by the server clock)
--   KEYS[5] P  hash        the number's runtime policy, set by any process (it expires with
--                          its carrier reactions when it holds nothing else: set_policy.lua):
--                          cap (overrides every caller's cap), state, reason, until (ms: end
--                          of a cool-down), lcap and luntil (a cap lowered until luntil),
--                          rates (windows replacing the caller's), since (ms: warming began;
--                          kept through a carrier's cool-down, so the warm-up goes on after it)
--   KEYS[6] R  sorted set  "<ms>:<token>" -> ms: the number's admitted calls, for its rate
--                          windows (kept as long as its longest window)
--   KEYS[7] C  sorted set  "<ms>:<number>:<token>" -> ms: calls to one callee (acquire only),
--                          from every number of the tag
-- hold_ms is max_hold for a waiter and the absolute deadline for a holder (0: none).
-- Events go to the owner's channel: "g\t<number>\t<token>" granted, "r\t..." released by
-- another process, "n\t..." nudged (ask again: the line moved).
--   then four keys per group (the number's trunk, then its tenant), same hash tag:
--   GH sorted set  "owner\tnumber\ttoken" -> lease expiry: the group's live leases
--   GR sorted set  the group's admitted calls, for its rate windows (as R)
--   GW sorted set  "owner\tnumber\ttoken" -> when it lapses: callers waiting for a group slot
--   and, beside GW, its key ending in 'q' instead of 'w':
--   GQ sorted set  the same members -> their place in the group's line (first come, first
--                  served): a caller takes a free slot of the group only when no caller ahead
--                  of it waits for one (a try-once caller has everyone ahead of it)
--   and, beside GW, its key ending in 'v' instead of 'w' (a group with a reserve only):
--   GV sorted set  the members of GQ that may take the group's reserve (priority calls),
--                  with their GQ places: a caller ahead stands before another only for a
--                  slot it may take (group_has_room)
--   GP hash        the group's runtime policy: cap, rates (replacing the configured ones)
-- and, outside KEYS (named from H: same hash tag), more keys per number:
--   S  set         the tokens of the number's session leases (see below)
--   X  sorted set  token -> when its record lapses (ms): leases that lapsed (expired, or their
--                  session did) and were dropped, so that a later release can tell it found
--                  an expired lease: kept ENDED_KEPT times the lease's ttl from its lapse.
--                  For the same reason a number's H, M and S live that long past their
--                  leases' lapses (a lease that lapsed unnoticed is still found in H)
--   E  sorted set  "owner\ttoken" -> when its record lapses (ms): leases ended for good
--                  (released by another process, reset, released with their owner), so that a
--                  holder cut off meanwhile cannot count them again (restore.lua); kept
--                  ENDED_KEPT times the lease's ttl, then dropped (the key expires with its
--                  last record). The owner's next lease of the token (a call ID used again)
--                  drops it: that lease was never ended.
-- Session leases: a lease taken for a session (the owner is the session's name) lives while
-- the session does, and never past its deadline (max_hold, else SESSION_HOLD_MAX): its H score
-- (and its groups' GH scores) is that deadline, and its meta names the session record, a hash
-- (session name -> "<when its life ends, ms>\t<life>\t<when the life before ended>") that one
-- keep-alive call extends for all its leases (keepalive.lua); an acquire for the session
-- extends it too. A lease belongs to the life of the session it was granted in: once that life
-- ended (nobody kept the session alive in time), a keep-alive starts a new life, and the
-- leases of the old one never count again. A lapsed lease stops counting: settle_sessions
-- drops it wherever leases are counted.
local KEYS, ARGV, H, Q, W, M, P, R, GROUPS
-- What one call has read already: the server time, the number's policy, and when expired
-- leases and lapsed waiters were last dropped (a batch of operations shares them).
local NOW, POLICY, PURGED
-- policy stamp key -> {its newest stamp, when that reached it}: read once a call
local STAMPS = {}
-- session record key .. '\t' .. session name -> when it lapses (ms; 0: it has): read once a call
local SESSIONS = {}
-- key -> the time (ms) this call already made it live at least until (a batch extends once).
local EXTENDED = {}
-- marker key (see fence_mark) -> true once this call looked at it
local MARKED = {}
-- a group's GW -> true once this call found it empty (nobody waits there: only
-- join_group_line adds to it, and clears this)
local IDLE_LINES = {}

-- Every function starts here: the keys and arguments of the call become the names above
-- (Redis runs one function at a time, so they are never shared by two calls).
local function bind(keys, args)
  KEYS, ARGV = keys, args
  H, Q, W, M, P, R = keys[1], keys[2], keys[3], keys[4], keys[5], keys[6]
  -- (a number's keys end with its policy stamp, S: not a group's)
  GROUPS = math.max(math.floor((#keys - 7) / 4), 0)
  NOW, POLICY, PURGED = nil, nil, nil
  -- (a table the last call left empty serves again)
  if next(STAMPS) ~= nil then STAMPS = {} end
  if next(EXTENDED) ~= nil then EXTENDED = {} end
  if next(SESSIONS) ~= nil then SESSIONS = {} end
  if next(MARKED) ~= nil then MARKED = {} end
  if next(IDLE_LINES) ~= nil then IDLE_LINES = {} end
end

-- Whether nobody waits in a group's line (GW) now.
local function idle_line(gw)
  if IDLE_LINES[gw] then return true end
  if redis.call('ZCARD', gw) > 0 then return false end
  IDLE_LINES[gw] = true
  return true
end

-- Pools (see pick.lua): a pool's load score is load * LOAD_SCALE + a pick counter.
local LOAD_SCALE = 1000000
local RESTING = LOAD_SCALE * LOAD_SCALE  -- the score band of numbers that could not take a call

-- The common start of a number's keys (KEYS[1..6] are this plus h q w m p r).
local function member_base(prefix, tag, number)
  return prefix .. '{' .. tag .. '}:n:' .. number .. ':'
end

-- "a\tb\t\tc" -> {'a', 'b', '', 'c'} (empty fields kept)
local function split_tabs(text)
  local fields = {}
  for field in string.gmatch(text .. '\t', '(.-)\t') do fields[#fields + 1] = field end
  return fields
end

-- Tell the first caller waiting on a pool (PB: its keys' common start) to pick again.
local function nudge_pool_line(PB, channels, pool)
  local first = redis.call('ZRANGE', PB .. 'w', 0, 0)[1]
  if first then
    local owner, token = string.match(first, '^(.-)\t(.*)$')
    redis.call('SPUBLISH', channels .. owner, 'n\tpool:' .. pool .. '\t' .. token)
  end
end

-- A caller leaves a pool's line (taken a slot, given up); the next is told when it is first.
local function leave_pool_line(PB, member, channels, pool)
  local was_first = redis.call('ZRANGE', PB .. 'w', 0, 0)[1] == member
  redis.call('ZREM', PB .. 'w', member)
  redis.call('ZREM', PB .. 'x', member)
  if was_first then nudge_pool_line(PB, channels, pool) end
end

local function group_keys(i)
  local base = 7 + (i - 1) * 4
  return KEYS[base + 1], KEYS[base + 2], KEYS[base + 3], KEYS[base + 4]
end

-- Make a key live at least ms more (never shorten it: other leases may need it longer).
local function extend(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end

-- A holder counts a lease again (restore.lua) only within three of its ttls from its last
-- renewal; the record of its end outlives that by one ttl more (RESTORE_WITHIN and ENDED_KEPT
-- in backends/_base.py).
local ENDED_KEPT = 4

local function ended_key()
  return string.sub(H, 1, -2) .. 'e'
end

-- The lease `token` of `owner` (taken with `ttl` ms) ended for good: record it, dropping lapsed
-- records.
local function mark_ended(owner, token, ttl, now)
  local key = ended_key()
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('ZADD', key, now + ENDED_KEPT * ttl, owner .. '\t' .. token)
  extend(key, ENDED_KEPT * ttl + 1000)
end

-- Whether the lease `token` of `owner` was ended for good (and its record has not lapsed).
local function was_ended(owner, token, now)
  local lapses = tonumber(redis.call('ZSCORE', ended_key(), owner .. '\t' .. token))
  return lapses ~= nil and lapses > now
end

-- The owner takes (or waits for) a new lease of the token: a record of its earlier lease's end
-- no longer applies (the key, empty, is deleted by ZREM).
local function forget_ended(owner, token)
  redis.call('ZREM', ended_key(), owner .. '\t' .. token)
end

local function member(owner, number, token)
  return owner .. '\t' .. number .. '\t' .. token
end

-- Apply a variadic command to a list in chunks (Lua's unpack has a stack limit).
local function each_chunk(cmd, key, list)
  for i = 1, #list, 1000 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
  end
end

-- The order of a group's line (GQ), beside its lapses (GW).
local function group_line(gw)
  return string.sub(gw, 1, -2) .. 'q'
end

-- The callers of a group's line that may take its reserve (GV), beside its lapses (GW).
local function reserve_line(gw)
  return string.sub(gw, 1, -2) .. 'v'
end

-- Drop the places in a group's line that lapsed.
local function purge_group_line(gw, now)
  local gone = redis.call('ZRANGEBYSCORE', gw, '-inf', now)
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', gw, '-inf', now)
    each_chunk('ZREM', group_line(gw), gone)
    each_chunk('ZREM', reserve_line(gw), gone)
  end
end

local function nudge_member(channels, m)
  local owner, number, token = string.match(m, '^(.-)\t(.-)\t(.*)$')
  redis.call('SPUBLISH', channels .. owner, 'n\t' .. number .. '\t' .. token)
end

-- Ask the first waiters of a group to try again (a slot of the group freed), and the first
-- that may take the reserve when it is further back (the slot may be a reserved one, which
-- those ahead of it may not take).
local function nudge_group(gw, channels, count, now)
  -- Nobody waits (the common case): nothing lapsed to drop, nobody to tell (GQ and GV list
  -- the members of GW only).
  if idle_line(gw) then return end
  purge_group_line(gw, now)
  if count <= 0 then return end
  local told = {}
  for _, m in ipairs(redis.call('ZRANGE', group_line(gw), 0, count - 1)) do
    nudge_member(channels, m)
    told[m] = true
  end
  if next(told) == nil then return end  -- nobody waits: the common case
  local first = redis.call('ZRANGE', reserve_line(gw), 0, 0)[1]
  if first and not told[first] then nudge_member(channels, first) end
end

-- Whether a slot of a group (its cap in force `cap`, its reserve `reserve`, `in_use` live
-- leases) is free for member m (`reserved`: a call that may take the reserve), the callers
-- ahead of it in the line (all of them when m has no place) served first. A caller ahead
-- stands before m only for a slot it may take: while only calls that may not take the reserve
-- wait, a reserved slot is free for one that may. Every lease counts in the share of calls
-- that may not: a call that may takes a slot before such a caller ahead only when that caller
-- would find its share full anyway (else it would take that caller's slot).
local function group_has_room(gw, m, cap, reserve, in_use, reserved, now)
  local share = math.max(cap - reserve - in_use, 0)  -- slots free to every call
  if idle_line(gw) then  -- nobody waits: the common case
    if reserved then return in_use < cap end
    return share > 0
  end
  purge_group_line(gw, now)
  local gq = group_line(gw)
  local ahead = redis.call('ZRANK', gq, m) or redis.call('ZCARD', gq)
  if ahead < share then return true end  -- a slot of the share is left once those ahead have theirs
  if not reserved or in_use + share >= cap then return false end
  local gv = reserve_line(gw)
  -- Taking a slot now fills the share one caller sooner: the last caller ahead that the share
  -- serves must be one that may take the reserve (it takes a reserved slot then).
  if share > 0 then
    local last = redis.call('ZRANGE', gq, share - 1, share - 1)[1]
    if not redis.call('ZSCORE', gv, last) then return false end
  end
  local takers = 0
  if ahead > share then  -- of the callers after those, the ones that may take the reserve
    local from = redis.call('ZRANGE', gq, share, share, 'WITHSCORES')[2]
    local mine = redis.call('ZSCORE', gq, m)
    takers = redis.call('ZCOUNT', gv, from, mine and ('(' .. mine) or '+inf')
  end
  return in_use + share + takers < cap
end

-- Member m keeps (or takes, at the back) a place in a group's line, for ms more (`reserved`:
-- it may take the group's reserve, which the group has).
local function join_group_line(gw, m, now, ms, reserved)
  local gq = group_line(gw)
  if not redis.call('ZSCORE', gq, m) then
    local tail = redis.call('ZRANGE', gq, -1, -1, 'WITHSCORES')
    local place = #tail > 0 and tonumber(tail[2]) + 1 or 1
    redis.call('ZADD', gq, place, m)
    if reserved then
      local gv = reserve_line(gw)
      redis.call('ZADD', gv, place, m)
      extend(gv, ms + 1000)
    end
  elseif reserved then
    extend(reserve_line(gw), ms + 1000)
  end
  redis.call('ZADD', gw, now + ms, m)
  IDLE_LINES[gw] = nil
  extend(gw, ms + 1000)
  extend(gq, ms + 1000)
end

-- Member m leaves a group's line; when it was first (or the first that may take the reserve),
-- the next is told (a slot kept for m may be free). `free`: false when m took that slot and
-- none is left (nobody to tell then); or, as a function, what tells it (asked only when m was
-- first).
local function leave_group_line(gw, m, channels, now, free)
  if IDLE_LINES[gw] or redis.call('ZREM', gw, m) == 0 then return end
  local gq = group_line(gw)
  local was_first = redis.call('ZRANGE', gq, 0, 0)[1] == m
  redis.call('ZREM', gq, m)
  local gv = reserve_line(gw)
  local first_reserved = redis.call('ZRANGE', gv, 0, 0)[1]
  if first_reserved then
    redis.call('ZREM', gv, m)
    was_first = was_first or first_reserved == m
  end
  if was_first and type(free) == 'function' then free = free() end
  if was_first and free ~= false then nudge_group(gw, channels, 1, now) end
end

-- The lease left the number: take it out of its groups, and wake their waiters.
local function leave_groups(owner, number, token, channels, now)
  local m = member(owner, number, token)
  for i = 1, GROUPS do
    local gh, _, gw = group_keys(i)
    if not idle_line(gw) then leave_group_line(gw, m, channels, now) end
    if redis.call('ZREM', gh, m) == 1 then nudge_group(gw, channels, 1, now) end
  end
end

-- The fence: when the server may have lost its data (it restarted, its data was flushed, or a
-- replica that lacked the newest writes took over), leases of calls still up are missing, and
-- their holders count them again (restore.lua) at their next renewal. Until they had the time
-- to, no new slot is granted (acquire, pick and promote hand out nothing; renewals, releases
-- and restores go through): for the longest lease TTL (grace) that callers passed since.
-- Its state lives in this library's Lua values, which the server drops with its data: a
-- restarted server, a promoted replica (whose library never ran: replicas are sent effects,
-- not calls) or a new release's library starts with none. A library seeing the server for the
-- first time reads INFO once (and again after RECHECK_MS without any call, to see a node
-- demoted and promoted again): it fences when the server started less than a grace ago, when
-- it became master by a promotion, or when its identity (run ID and the replication ID it
-- had before its last promotion) changed.
-- A flush (or a key prefix's keys deleted) is seen by a marker key per key prefix, without
-- expiry: gone while this library had seen it, that prefix is fenced (single server and
-- Sentinel; a Cluster function cannot reach a key outside its own slot).
local RECHECK_MS = 1000
-- checked: when INFO was last read (nil: never); first: the first call seen; uptime: the
-- server's uptime then (ms); lost: when a loss of the whole server was seen (nil: none);
-- grace: the longest TTL a caller passed while the fence under it held (ms); marks: marker key
-- -> what this library saw of it; flushed: marker key -> when it was found gone; refused:
-- marker keys this library may not read (ACL) or reach (Cluster).
local FENCE = {checked = nil, ident = nil, first = 0, uptime = 0, lost = nil, grace = 0,
  cluster = false, marks = {}, flushed = {}, refused = {}}

local function info_field(text, name)
  return string.match(text, name .. ':([^\r\n]*)')
end

-- An INFO section ('' when the caller's ACL user may not run INFO: then a fresh library
-- fences, as after a restart, and promotions are not told apart from restarts).
local function info(section)
  local text = redis.pcall('INFO', section)
  return type(text) == 'string' and text or ''
end

-- The marker key of the key prefix of a number's keys (H): "<prefix>fence".
local function fence_mark(key)
  return string.sub(key, 1, string.find(key, '{', 1, true) - 1) .. 'fence'
end

-- Look at the server (see above) and at the marker key `mark` (nil: none): note a loss seen.
local function watch_for_loss(now, mark)
  local f = FENCE
  if f.checked == nil or now - f.checked > RECHECK_MS then
    local server, repl = info('server'), info('replication')
    -- A promotion shifts the replication ID into master_replid2 at second_repl_offset (the
    -- ID alone also changes when a master gets its first replica: no loss).
    local ident = (info_field(server, 'run_id') or '') .. ':' ..
      (info_field(repl, 'master_replid2') or '') .. ':' ..
      (info_field(repl, 'second_repl_offset') or '')
    if f.checked == nil then
      f.first = now
      f.uptime = tonumber(info_field(server, 'uptime_in_seconds') or '0') * 1000
      f.cluster = info_field(info('cluster'), 'cluster_enabled') == '1'
      if tonumber(info_field(repl, 'second_repl_offset') or '-1') ~= -1 then f.lost = now end
    elseif server ~= '' and f.ident ~= nil and ident ~= f.ident then
      f.lost = now
    end
    if server ~= '' then f.ident = ident end  -- (nil while no caller may read INFO)
  end
  f.checked = now
  if mark and not f.cluster and not f.refused[mark] and not MARKED[mark] then
    MARKED[mark] = true  -- looked at once a call (a batch of operations shares it)
    -- The marker's value is when it was made (ms, server clock). A library fences
    -- when it finds the marker gone, or made again (by another release's library, which saw
    -- the flush first) after its own last look; a marker it never saw, made before that, is
    -- another database's (the same prefix there: each keeps its own marker).
    local seen = f.marks[mark]  -- {values seen = true, last = when it last looked}
    local value = redis.pcall('GET', mark)
    if type(value) == 'table' then  -- refused: an ACL without the marker, or a Cluster whose
      f.refused[mark] = true        -- INFO this user may not read (the marker is outside the
      return                        -- call's slot): no marker for this prefix
    end
    if value and seen and not seen[value] then
      local made = tonumber(value)
      if not made or made >= seen.last then f.flushed[mark] = now end
    elseif not value then
      if seen then f.flushed[mark] = now end
      value = tostring(now)
      redis.call('SET', mark, value)
    end
    seen = seen or {}
    seen[value], seen.last = true, now
    f.marks[mark] = seen
  end
end

-- When the fence ends (ms, server clock; at or before now: none) for the key prefix of `mark`
-- (nil: the whole server's), for a caller whose leases live `grace` ms (0: it tells none).
local function fence_ends(f, flushed, g)
  local e = 0
  if f.lost then e = f.lost + g end
  if flushed and flushed + g > e then e = flushed + g end
  if f.uptime < g and f.first + g > e then e = f.first + g end
  return e
end

local function fence_end(now, grace, mark)
  local f = FENCE
  local flushed = mark and f.flushed[mark]
  -- A longer TTL lengthens the fence while the fence under that TTL still holds (a fence that
  -- ended may so begin again: it only delays calls, for holders of that longer TTL).
  if grace > f.grace and fence_ends(f, flushed, grace) > now then f.grace = grace end
  return fence_ends(f, flushed, f.grace)
end

-- The fence's end when new slots may not be granted now under the marker key `mark`, for a
-- caller whose leases live `grace` ms; nil when they may.
local function fenced(now, grace, mark)
  watch_for_loss(now, mark)
  local e = fence_end(now, grace, mark)
  return e > now and e or nil
end

-- Whether a slot of the number bound (H) may be handed to a waiter now (promote): not while
-- fenced, nor before the library has looked at the server (the waiter is nudged to ask: its
-- acquire looks).
local function may_hand_over(now)
  return FENCE.checked ~= nil and fence_end(now, 0, fence_mark(H)) <= now
end

-- End the fence now, on the whole server (an operator who knows that no call is up, or a new
-- deployment); `mark`: the caller's prefix's marker key.
local function lift_fence(now, mark)
  FENCE.checked = nil  -- the server looked at now, as it is (a change just made included)
  watch_for_loss(now, mark)
  FENCE.lost, FENCE.uptime, FENCE.flushed = nil, math.huge, {}
  -- Marker keys gone by now are no loss either: each is made again on its prefix's next call
  -- (the others are still watched: a flush after the lift is one).
  if not FENCE.cluster then
    for key in pairs(FENCE.marks) do
      local value = redis.pcall('GET', key)
      if not value then FENCE.marks[key] = nil end
    end
  end
end

local function now_ms()
  if not NOW then
    local t = redis.call('TIME')
    NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return NOW
end

-- The policy fence. A published policy is stamped (a number that grows with each publish:
-- when it was published, in ms; 0: none published), and every slot of the server has a stamp
-- S (a sorted set: member 'v' scores the newest policy's stamp seen there, 't' when it reached
-- the slot, in ms; ZADD GT only ever raises 'v'). An acquire, a pick or a pool update says
-- the stamp of the policy its caller decided with: an older one than the slot's is refused
-- before anything is read or written (the caller loads the policy now published, and asks
-- again); a newer one raises the slot's, so that from then on no caller decides with an older
-- policy on this slot. Publishing raises every slot's stamp itself. A caller that queued
-- before the newest policy reached the slot asked with an older one: it is never handed a
-- slot without asking again (promote). Returns the slot's stamp when `version` is older,
-- else nil.
local function stamp_of(stamp)
  local known = STAMPS[stamp]
  if not known then
    local read = redis.call('ZMSCORE', stamp, 'v', 't')
    known = {tonumber(read[1]) or 0, tonumber(read[2])}
    STAMPS[stamp] = known
  end
  return known
end

local function raise_stamp(stamp, version, now)
  if redis.call('ZADD', stamp, 'GT', 'CH', version, 'v') == 1 then
    redis.call('ZADD', stamp, now, 't')
    STAMPS[stamp] = {version, now}
  end
end

local function policy_stale(version, stamp)
  version = tonumber(version)
  local seen = stamp_of(stamp)[1]
  if version < seen then return seen end
  if version > seen then raise_stamp(stamp, version, now_ms()) end
  return nil
end

-- When the newest policy reached the slot of the bound number's keys (ms; nil: never).
local function policy_reached()
  local stamp = KEYS[8 + 4 * GROUPS]
  if not stamp or string.sub(stamp, -6) ~= ':stamp' then return nil end
  return stamp_of(stamp)[2]
end

-- owner, ttl, hold, limit, flags, since, the session record key ('' for a lease of one
-- throttle, renewed by it lease by lease) and the session's life it was granted in.
local function parse_meta(raw)
  local owner, ttl, hold, limit, flags, since, rest =
    string.match(raw, '^(.-)\t(%d+)\t(%d+)\t(%d+)\t(%a*)\t?(%d*)\t?(.*)$')
  local skey, life = string.match(rest or '', '^(.*)\t(%d+)$')
  if not skey then skey, life = rest, 0 end
  return owner, tonumber(ttl), tonumber(hold), tonumber(limit), flags, tonumber(since), skey,
    tonumber(life)
end

-- An integer as text, digit by digit. Lua's own conversion (a number joined with ..,
-- tostring) keeps 14 significant digits and writes 10^14 as '1e+14', which the patterns here
-- would no longer read: every integer written into a stored text goes through this.
local function int(n)
  return string.format('%d', n)
end

local function meta(owner, ttl, hold, limit, flags, since, skey, life)
  -- (texts joined as they are: a format's %s stops at a zero byte)
  local text = owner .. string.format('\t%d\t%d\t%d\t', ttl, hold, limit) .. flags .. '\t'
    .. int(since)
  if skey and skey ~= '' then text = text .. '\t' .. skey .. '\t' .. int(life or 0) end
  return text
end

-- The owner argument of acquire and pick: "owner", or "owner\t<session record>" for a
-- session lease (the record's key without the prefix: see record_of). Returns owner, that
-- record ('' for none).
local function split_owner(arg)
  if not string.find(arg, '\t', 1, true) then return arg, '' end
  local owner, skey = string.match(arg, '^([^\t]*)\t(.+)$')
  if owner then return owner, skey end
  return arg, ''
end

-- A session lease lives at most this long when taken without max_hold (ms: one day); the
-- number's keys live as long as its deadline.
local SESSION_HOLD_MAX = 86400000

-- The key of a session record, from what a lease's meta names: the key without the prefix
-- (the prefix is that of the keys this call was given, all of which start with it).
local function record_of(skey)
  return string.match(H, '^(.-){') .. skey
end

-- The session `owner` of record `record` (a whole key): {when its life ends (ms), its life,
-- when the life before ended}; {0, 0, 0} when it has no record.
local function session_life(record, owner)
  local at = record .. '\t' .. owner
  local life = SESSIONS[at]
  if life == nil then
    local raw = redis.call('HGET', record, owner)
    local ends, n, before = string.match(raw or '', '^(%d+)\t(%d+)\t(%d+)$')
    life = ends and {tonumber(ends), tonumber(n), tonumber(before)} or {0, 0, 0}
    SESSIONS[at] = life
  end
  return life
end

local function write_life(record, owner, life)
  redis.call('HSET', record, owner, int(life[1]) .. '\t' .. int(life[2]) .. '\t' .. int(life[3]))
  SESSIONS[record .. '\t' .. owner] = life
end

-- Keep the session alive for ttl ms from now (never shortened), its record key with it; a
-- session whose life ended starts a new one. Returns the session's life now.
local function keep_session(record, owner, ttl, now)
  local life = session_life(record, owner)
  local ends = now + ttl
  if life[1] <= now then
    life = {ends, life[2] + 1, life[1]}
    write_life(record, owner, life)
  elseif life[1] < ends then
    life = {ends, life[2], life[3]}
    write_life(record, owner, life)
  end
  -- The record lives ttl more at least; once per call (a granted acquire keeps the session
  -- alive twice: when the lease is granted, and for its reply).
  local ms = ttl + 1000
  if (EXTENDED[record] or 0) < now + ms then
    extend(record, ms)
    EXTENDED[record] = now + ms
  end
  return life[2]
end

-- The session's life ends now: its leases lapse (a keep-alive starts a new life).
local function end_session(record, owner, now)
  local life = session_life(record, owner)
  if life[1] > now then write_life(record, owner, {now, life[2], life[3]}) end
end

-- When a session lease of life `n` of the session lapses (ms; its deadline aside): when that
-- life ended or ends; 0 for a life before the last one (long forgotten).
-- For a life before the last one, its end is not kept: the last one's end stands for it
-- (later than the true one: such a lease counts as lapsed since then).
local function life_end(skey, owner, n)
  local life = session_life(record_of(skey), owner)
  if life[2] == n then return life[1] end
  return life[3]
end

-- When a lease (its H score and meta) lapses: its score, or for a session lease the end of
-- its life of the session when that comes first.
local function lapse_of(score, raw)
  local owner, _, _, _, _, _, skey, n = parse_meta(raw or '')
  if skey and skey ~= '' then return math.min(score, life_end(skey, owner, n)) end
  return score
end

-- When a lease granted now lapses unless renewed (its H score), and its deadline (0: none).
local function lease_times(ttl, hold, skey, now)
  if skey ~= '' then
    local deadline = now + ((hold > 0) and hold or SESSION_HOLD_MAX)
    return deadline, deadline
  end
  local expires, deadline = now + ttl, 0
  if hold > 0 then
    deadline = now + hold
    if deadline < expires then expires = deadline end
  end
  return expires, deadline
end

local function sessions_set()
  return string.sub(H, 1, -2) .. 's'
end

local function lapsed_key()
  return string.sub(H, 1, -2) .. 'x'
end

-- Texts of rate windows read before -> their windows (it depends on the text alone), and how
-- many it holds (emptied past PARSED_MAX).
local PARSED, PARSED_COUNT, PARSED_MAX = {}, 0, 1000

-- Rate windows, written "amount:window_ms:calendar;..." (calendar 1: a day from local midnight).
-- The list returned is shared by every call that reads the same text: read only.
local function parse_windows(spec)
  local windows = PARSED[spec]
  if windows then return windows end
  windows = {}
  for amount, ms, cal in string.gmatch(spec, '(%d+):(%d+):(%d)') do
    windows[#windows + 1] = {tonumber(amount), tonumber(ms), cal == '1'}
  end
  if PARSED_COUNT >= PARSED_MAX then PARSED, PARSED_COUNT = {}, 0 end
  PARSED[spec], PARSED_COUNT = windows, PARSED_COUNT + 1
  return windows
end

-- Where a window starts now: a rolling window reaches back its length; a calendar day starts
-- at the last local midnight (tz_ms: the time zone's offset from UTC).
local function window_start(w, now, tz_ms)
  if w[3] then return math.floor((now + tz_ms) / 86400000) * 86400000 - tz_ms end
  return now - w[2]
end

-- The windows in force: the runtime ones, else the caller's; while warming, the warm-up's
-- daily cap for the current week too (warmup: "10,20,30", calendar: '1' from local midnight).
local function windows_in_force(pol, asked, warmup, calendar, now)
  local windows = parse_windows(pol[7] or asked)
  local since = tonumber(pol[8])
  if since and warmup ~= '' then  -- warming (or cooled down by a carrier while warming)
    local week = math.floor((now - since) / 604800000) + 1
    local i = 0
    for amount in string.gmatch(warmup, '%d+') do
      i = i + 1
      if i == week then
        windows = {unpack(windows)}  -- (a list of its own: parse_windows shares its lists)
        windows[#windows + 1] = {tonumber(amount), 86400000, calendar == '1'}
      end
    end
  end
  return windows
end

-- nil if every window admits one more call; else {ms until it would, the full window}.
local function rate_refusal(log, windows, now, tz_ms)
  for _, w in ipairs(windows) do
    local start = window_start(w, now, tz_ms)
    local count = redis.call('ZCOUNT', log, start, '+inf')
    if count >= w[1] then
      if w[3] then return {start + 86400000 - now, w} end
      -- The oldest hits must leave the window until one fewer than the amount remain.
      local hit = redis.call('ZRANGEBYSCORE', log, start, '+inf', 'WITHSCORES', 'LIMIT', count - w[1], 1)
      return {tonumber(hit[2]) + w[2] + 1 - now, w}
    end
  end
  return nil
end

-- Count an admitted call in a log with these windows.
local function rate_hit(log, windows, now, member)
  local longest = 0
  for _, w in ipairs(windows) do
    local span = w[3] and 86400000 or w[2]
    if span > longest then longest = span end
  end
  -- One hit per admitted call, even when the same token is admitted twice in one millisecond.
  local hit = int(now) .. ':' .. member
  while redis.call('ZADD', log, 'NX', now, hit) == 0 do hit = hit .. '+' end
  redis.call('ZREMRANGEBYSCORE', log, '-inf', now - longest - 1)
  redis.call('PEXPIRE', log, longest + 1000)
end

-- The number's runtime policy: {cap, state, reason, until, lcap, luntil, rates, since}
-- (false when unset).
local function policy()
  if not POLICY then
    POLICY = redis.call('HMGET', P, 'cap', 'state', 'reason', 'until', 'lcap', 'luntil', 'rates', 'since')
  end
  return POLICY
end

-- The cap in force: the stored override, else the caller's; a lowered cap while it lasts.
local function cap_in_force(pol, asked, now)
  local cap = tonumber(pol[1]) or asked
  local lcap, luntil = tonumber(pol[5]), tonumber(pol[6])
  if lcap and luntil and luntil > now and lcap < cap then cap = lcap end
  return cap
end

-- The state that keeps the number from admitting calls, or nil when it admits them.
local function unavailable(pol, now)
  local state = pol[2]
  if not state or state == 'active' or state == 'warming' then return nil end
  if state == 'cooling' then
    local untl = tonumber(pol[4])
    if untl and untl <= now then return nil end
  end
  return state
end

-- The number itself (its keys are "<prefix>{<tag>}:n:<number>:<letter>").
local function own_number()
  return string.match(H, '}:n:(.*):h$')
end

-- Leases that lapsed and were dropped ({token, when it lapsed, its meta} each) are recorded,
-- so that a later release can tell it found an expired lease: until ENDED_KEPT ttls after
-- the lapse (a lapse older than that is forgotten, as if the number had been idle).
local function mark_lapsed(dropped, now)
  local key = lapsed_key()
  local latest = 0
  for _, lease in ipairs(dropped) do
    local _, ttl = parse_meta(lease[3] or '')
    local untl = lease[2] + ENDED_KEPT * (ttl or 0)
    if untl > now then
      redis.call('ZADD', key, untl, lease[1])
      if untl > latest then latest = untl end
    end
  end
  if latest > 0 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    extend(key, latest - now + 1000)
  end
end

-- Whether a lease that lapsed at `lapse` (ms), taken with `ttl`, is still remembered as lapsed.
local function remembered(lapse, ttl, now)
  return lapse + ENDED_KEPT * (ttl or 0) > now
end

-- Whether the lease (its meta fields) is a session lease whose session's life lapsed.
local function session_lapsed(owner, skey, n, now)
  return skey ~= nil and skey ~= '' and life_end(skey, owner, n) <= now
end

-- The number's session leases: {token, owner, session record key, H score, meta, life} each.
local function session_leases()
  local leases = {}
  for _, token in ipairs(redis.call('SMEMBERS', sessions_set())) do
    local raw = redis.call('HGET', M, token)
    local score = tonumber(redis.call('ZSCORE', H, token))
    if raw and score then
      local owner, _, _, _, _, _, skey, n = parse_meta(raw)
      leases[#leases + 1] = {token, owner, skey, score, raw, n}
    else
      leases[#leases + 1] = {token}  -- gone by other means: only its entry in S is left
    end
  end
  return leases
end

-- Drop the number's session leases whose session lapsed (from H, M, S and its groups' holders).
local function settle_sessions(now)
  local dead = {}
  local number = nil
  for _, lease in ipairs(session_leases()) do
    local token, owner, skey = lease[1], lease[2], lease[3]
    if not owner then
      redis.call('SREM', sessions_set(), token)
    elseif session_lapsed(owner, skey, lease[6], now) then
      local lapse = math.min(lease[4], life_end(skey, owner, lease[6]))
      dead[#dead + 1] = {token, lapse, lease[5]}
      redis.call('ZREM', H, token)
      redis.call('HDEL', M, token)
      redis.call('SREM', sessions_set(), token)
      number = number or own_number()
      for g = 1, GROUPS do
        local gh = group_keys(g)
        redis.call('ZREM', gh, member(owner, number, token))
      end
    end
  end
  if #dead > 0 then mark_lapsed(dead, now) end
end

-- How many of the number's leases still in H (score past now) belong to a lapsed session (read
-- only: the views count them out without writing).
local function lapsed_session_leases(now)
  local count = 0
  for _, lease in ipairs(session_leases()) do
    if lease[2] and lease[4] > now and session_lapsed(lease[2], lease[3], lease[6], now) then
      count = count + 1
    end
  end
  return count
end

-- The number's live leases (read only).
local function live_leases(now)
  return redis.call('ZCOUNT', H, '(' .. now, '+inf') - lapsed_session_leases(now)
end

-- A group's holders (GH) that are session leases of a lapsed session: dropped (`write`), or
-- only counted. A group counts such a lease until this runs, or its own number settles it.
local function settle_group(gh, now, write)
  local base = string.match(gh, '^(.*})') .. ':n:'  -- the group's numbers share its tag
  local dropped = 0
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', gh, '(' .. now, '+inf')) do
    local owner, number, token = string.match(m, '^(.-)\t(.-)\t(.*)$')
    local raw = redis.call('HGET', base .. number .. ':m', token)
    if raw then
      local _, _, _, _, _, _, skey, n = parse_meta(raw)
      if session_lapsed(owner, skey, n, now) then
        if write then redis.call('ZREM', gh, m) end
        dropped = dropped + 1
      end
    end
  end
  return dropped
end

-- When the first of a group's holders lapses (ms), nil when it has none: a session lease's
-- lapse is its session's life's end when that comes before its deadline (its GH score).
local function group_first_lapse(gh)
  local base = string.match(gh, '^(.*})') .. ':n:'
  local first = nil
  local all = redis.call('ZRANGE', gh, 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    local lapse = tonumber(all[i + 1])
    local owner, number, token = string.match(all[i], '^(.-)\t(.-)\t(.*)$')
    local raw = redis.call('HGET', base .. number .. ':m', token)
    if raw then
      local _, _, _, _, _, _, skey, n = parse_meta(raw)
      if skey ~= '' then lapse = math.min(lapse, life_end(skey, owner, n)) end
    end
    if not first or lapse < first then first = lapse end
  end
  return first
end

-- Drop expired leases and lapsed waiters; return how many wait in line afterwards (`queued`:
-- how many wait in it now, when the caller just read it).
local function purge(now, queued)
  if PURGED == now then return queued or redis.call('ZCARD', Q) end  -- nothing lapsed since
  PURGED = now
  local lapsed = redis.call('ZRANGEBYSCORE', H, '-inf', now, 'WITHSCORES')
  if #lapsed > 0 then
    local dead, dropped = {}, {}
    for i = 1, #lapsed, 2 do
      local token = lapsed[i]
      dead[#dead + 1] = token
      dropped[#dropped + 1] = {token, tonumber(lapsed[i + 1]), redis.call('HGET', M, token)}
    end
    redis.call('ZREMRANGEBYSCORE', H, '-inf', now)
    mark_lapsed(dropped, now)
    each_chunk('HDEL', M, dead)
    each_chunk('SREM', sessions_set(), dead)
  end
  settle_sessions(now)  -- (neither touches the line)
  queued = queued or redis.call('ZCARD', Q)
  if queued == 0 then return 0 end
  local gone = redis.call('ZRANGEBYSCORE', W, '-inf', now)
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', W, '-inf', now)
    each_chunk('ZREM', Q, gone)
    each_chunk('HDEL', M, gone)
  end
  return queued - #gone
end

-- Make a key live `ms` more from `now`: exactly (`fresh`: it has no expiry yet), else at least
-- (PEXPIRE GT), skipped when this call already did as much.
local function make_live(key, ms, now, fresh)
  local at = now + ms
  if fresh then
    redis.call('PEXPIRE', key, ms)
  elseif (EXTENDED[key] or 0) < at then
    redis.call('PEXPIRE', key, ms, 'GT')
  else
    return
  end
  EXTENDED[key] = at
end

-- The hot path's touch: a lease taken with `ttl`, expiring at `expires`, was added; make H
-- and M live at least as long as it may be remembered (they already cover every other lease
-- and place in line). `fresh_h`: H had no lease before, so it has no expiry yet; `fresh_m`:
-- neither had M (nobody waited either).
local function cover(expires, now, fresh_h, fresh_m, ttl, line)
  local ms = expires - now + ENDED_KEPT * ttl + 1000
  make_live(H, ms, now, fresh_h)
  make_live(M, ms, now, fresh_m)
  if line then  -- `line`: callers may wait; their line lives as long as M (see keep_line)
    make_live(Q, ms, now, false)
    make_live(W, ms, now, false)
  end
end

-- A session lease was granted: listed in S, and its session kept alive (an acquire for the
-- session speaks for it).
-- A session lease is about to be granted: the session is kept alive, and its life returned
-- (the lease belongs to it); nil for a lease of one throttle.
local function grant_life(owner, skey, ttl, now)
  if skey == '' then return nil end
  return keep_session(record_of(skey), owner, ttl, now)
end

-- A session lease was granted: listed in S; S and the session's record live as long as H.
local function hold_for_session(token, skey, ttl, expires, now)
  if skey == '' then return end
  local set = sessions_set()
  local ms = expires - now + ENDED_KEPT * ttl + 1000  -- as long as H (cover)
  redis.call('SADD', set, token)
  extend(set, ms)
  extend(record_of(skey), ms)  -- the lease's lapse is read from it as long as it is remembered
end

-- Grant slots to waiters, first come first served, while the head's limit allows; return how
-- many still wait. H and M are made to live as long as each lease granted. If a lease granted
-- here is now the earliest to expire, the new head of the line is nudged to ask again: it
-- times its wait by the earliest expiry it was told of, and this lease (its holder may have
-- died) may expire before that.
-- Grants to the owner `here` (the caller's own, when it can tell it) are not published but
-- added to the list `handed`, for the caller's reply.
local function promote(now, queued, number, channels, here, handed)
  local granted = nil
  local pol = nil
  if queued > 0 and not may_hand_over(now) then
    -- Fenced (or not known yet: the head is nudged, and its acquire looks at the server).
    if FENCE.checked == nil then
      local token = redis.call('ZRANGE', Q, 0, 0)[1]
      local owner = parse_meta(redis.call('HGET', M, token))
      redis.call('SPUBLISH', channels .. owner, 'n\t' .. number .. '\t' .. token)
    end
    return queued
  end
  local reached = policy_reached()
  local holding = nil  -- (read once: then counted as leases are added)
  while queued > 0 do
    local token = redis.call('ZRANGE', Q, 0, 0)[1]
    local owner, ttl, hold, limit, flags, since, skey = parse_meta(redis.call('HGET', M, token))
    pol = pol or policy()
    if unavailable(pol, now) then return queued end
    holding = holding or redis.call('ZCARD', H)
    local full = holding >= cap_in_force(pol, limit, now)
    -- Windows set at run time, or a warm-up begun, since the head queued apply to it too: it
    -- is not handed a slot without asking then, so that they are checked and counted; nor is
    -- a head that queued before the newest policy reached the slot (its cap may be older).
    if full or flags == 'r' or pol[7] or pol[8] or (reached and (since or 0) <= reached) then
      -- Nudge the head: it times its wait from the new leases, or (rate windows) asks for the
      -- free slot itself, so that its windows are checked.
      if not full or (granted and granted[redis.call('ZRANGE', H, 0, 0)[1]]) then
        redis.call('SPUBLISH', channels .. owner, 'n\t' .. number .. '\t' .. token)
      end
      return queued
    end
    local expires, deadline = lease_times(ttl, hold, skey, now)
    local n = grant_life(owner, skey, ttl, now)
    redis.call('ZREM', Q, token)
    redis.call('ZREM', W, token)
    local added = redis.call('ZADD', H, expires, token)
    redis.call('HSET', M, token, meta(owner, ttl, deadline, limit, flags, now, skey, n))
    -- (the last waiter leaves no line: Q and W are gone)
    cover(expires, now, holding == 0, false, ttl, queued > 1)
    holding = holding + added
    hold_for_session(token, skey, ttl, expires, now)
    if owner == here then
      handed[#handed + 1] = token
    else
      redis.call('SPUBLISH', channels .. owner, 'g\t' .. number .. '\t' .. token)
    end
    granted = granted or {}
    granted[token] = true
    queued = queued - 1
  end
  return 0
end

-- Keep the keys exactly as long as the latest lease or place in line they hold, so an idle
-- number leaves nothing behind. Q and W exist only while someone waits. (The hot path only
-- extends: see cover and keep_line.)
local function touch(now, queued)
  local last = 0
  -- Each lease is remembered ENDED_KEPT of its ttls past its expiry (see X).
  local h = redis.call('ZRANGE', H, 0, -1, 'WITHSCORES')
  for i = 1, #h, 2 do
    local _, ttl = parse_meta(redis.call('HGET', M, h[i]) or '')
    local keep = tonumber(h[i + 1]) + ENDED_KEPT * (ttl or 0)
    if keep > last then last = keep end
  end
  if queued > 0 then
    local w = redis.call('ZRANGE', W, -1, -1, 'WITHSCORES')
    if #w > 0 and tonumber(w[2]) > last then last = tonumber(w[2]) end
  end
  if last == 0 then
    redis.call('DEL', H, M, sessions_set())
    return
  end
  local ms = last - now + 1000
  redis.call('PEXPIRE', H, ms)
  redis.call('PEXPIRE', M, ms)
  redis.call('PEXPIRE', sessions_set(), ms)
  if queued > 0 then
    redis.call('PEXPIRE', Q, ms)
    redis.call('PEXPIRE', W, ms)
  end
end

-- The line's touch: a place in line lapsing in `ms` was added or renewed; make Q, W and M live
-- at least that long (`fresh`: nobody waited before, so Q and W have no expiry yet).
local function keep_line(ms, fresh)
  local now = now_ms()
  -- The line lives as long as M: M outlives its leases (see X), and a waiter's meta left in M
  -- after its line's keys expired would read as a waiter's still.
  local m_left = redis.call('PTTL', M)
  if m_left > ms then ms = m_left end
  make_live(Q, ms, now, fresh)
  make_live(W, ms, now, fresh)
  if fresh then
    extend(M, ms)
  else
    make_live(M, ms, now, false)
  end
end

-- Milliseconds until a slot may free without anyone being told: the earliest lease expiry, or
-- the end of a lowered cap; -1 when neither.
local function retry_in(now)
  local wait = -1
  local h = redis.call('ZRANGE', H, 0, 0, 'WITHSCORES')
  if #h > 0 then wait = math.max(tonumber(h[2]) - now, 0) end
  -- A session lease lapses with its session, before its deadline (its score) when nobody
  -- keeps the session alive.
  for _, lease in ipairs(session_leases()) do
    if lease[2] then
      local lapse = math.max(life_end(lease[3], lease[2], lease[6]) - now, 0)
      if wait < 0 or lapse < wait then wait = lapse end
    end
  end
  local pol = policy()
  local luntil = tonumber(pol[6])
  if pol[5] and luntil and luntil > now and (wait < 0 or luntil - now < wait) then
    wait = luntil - now
  end
  -- While fenced, nothing is granted: asking before the fence ends is useless.
  local fence = fence_end(now, 0, fence_mark(H)) - now
  if fence > 0 and wait < fence then wait = fence end
  return wait
end
