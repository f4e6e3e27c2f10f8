-- Python twin: MemoryBackend.pick (backends/memory/_pools.py).
-- Take a slot on the first number of a pool, in the strategy's order, that admits the call
-- under all of its limits, exactly as acquire (without queueing) decides for one number.
-- KEYS[1] PM  hash        number -> its spec: "tag\tlimit\twindows\twarmup\tmidnight\tarea\t
--                         region", with a paid period "\tlapses_ms\twarn_ms" (when it lapses,
--                         when its warning window begins: ms since the epoch), then, per
--                         group, "\tname\tcap\treserve\twindows" (written by pool_update,
--                         which also keeps the area and region sets: PM's key with
--                         ':a:<area>', ':r:<region>' for its last letter)
-- KEYS[2] PL  sorted set  number -> load * LOAD_SCALE + when its load last changed (picked,
--                         released, added: a counter): the least loaded first, and among
--                         equals the one longest at its load;
--                         a number that could not take a call rests behind them all (RESTING),
--                         one passed over as lapsed behind those (UNPAID)
-- KEYS[3] PO  sorted set  number -> its place in the round-robin order
-- KEYS[4] PC  string      the round-robin cursor: the place after the last number picked
-- KEYS[5] PS  counter     the move counter (PL's tie-breaker)
-- KEYS[6] S   sorted set  the policy stamp of the pool's slot (see policy_stale)
-- ARGV[1] strategy: 'least-loaded' (the least loaded first), 'round-robin' (in PO's order
-- from the cursor PC), 'local' (first a sample of the numbers of the callee's area, then of
-- its region, the least loaded of each first; then as least-loaded) or 'sticky' (first the
-- number the callee was last called from, while it is in the pool; then as least-loaded),
-- ARGV[2] token, ARGV[3] owner (as acquire's: "owner\t<session record key>" for a session
-- lease), ARGV[4] ttl_ms, ARGV[5] max_hold_ms (0: none), ARGV[6] key prefix,
-- ARGV[7] channel prefix, ARGV[8] time zone offset in ms, ARGV[9] callee ('' none),
-- ARGV[10] callee windows ('' none), ARGV[11] priority,
-- ARGV[12] tries: how many numbers to try at most, ARGV[13] callee area ('' none),
-- ARGV[14] callee region ('' none), ARGV[15] sticky_ms: how long a callee keeps its number
-- under the sticky strategy (the callee's last number: PM's key with ':k:<callee>'),
-- ARGV[16] wait: '1' if the caller waits when nothing admits it, ARGV[17] line_ms: how long
-- its place in line lasts unless it asks again, ARGV[18] pool name (for its waiters' events),
-- ARGV[19] the stamp of the published policy the caller decided with (0: none; see
-- policy_stale), ARGV[20] calendar: the caller's calendar now, ms since the epoch (0: none).
-- Whatever the strategy, a number whose paid period lapsed (calendar >= lapses_ms) is passed
-- over, and among numbers of equal load (least-loaded order, local's samples) those inside
-- their warning window (warn_ms <= calendar) come after the others (the instants are read
-- from PM's key with 'e' for its last letter, number -> "lapses_ms\twarn_ms", which
-- pool_update keeps from the specs: one read for a page of numbers).
-- Callers waiting on the pool: PM's key with ':w' (sorted set "owner\ttoken" -> arrival) and
-- ':x' (the same -> when the place lapses), both expiring with the latest place; while anyone
-- waits, only the first in line picks: others (also try-once callers) are refused, or queued
-- behind it. A caller takes (or keeps) a place only when some number it tried was full: one
-- held back only by rate windows or states waits without a place.
-- The slot a token took: PM's key with ':t:<token>' (string "number\ttag", as long as the
-- lease's first ttl). A pick sent again for the same token (its reply was lost) returns that
-- slot instead of taking a second one on another number; another owner's pick for the token
-- is a conflict.
-- The numbers' keys are not among KEYS: they are built here from their specs (on Redis
-- Cluster, a pool's numbers must share a hash tag, their tenant's).
-- Returns {1, number} granted, {-1, number} token conflict, {2, retry_in_ms (-1: unknown)}
-- when none admitted (also when others wait ahead of a caller trying once; {2, retry_in_ms,
-- 'f'} while the fence holds every grant), or {0, -1} when others wait ahead of a caller that
-- now waits behind them; {6, -1, stamp} when a newer policy than the caller's is published
-- (nothing is written); {2, -1, 'l'} when every number of the pool lapsed (by the calendar).
local PM, PL, PO, PC, PS, S = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local version = ARGV[19]
local stale = policy_stale(version, S)
if stale then return {6, -1, stale} end
local strategy, token, ttl, hold = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
-- ARGV[3] goes on to acquire as it is (session leases); read now: each acquire binds ARGV anew
local owner_arg = ARGV[3]
local owner, skey = split_owner(owner_arg)
local prefix, channels, tz, callee, callee_windows = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local priority, tries = tonumber(ARGV[11]), tonumber(ARGV[12])
local area, region, sticky_ms = ARGV[13], ARGV[14], ARGV[15]
local PB = string.sub(PM, 1, -2)
local waits, wait_ms, pool = ARGV[16] == '1', tonumber(ARGV[17]), ARGV[18]
local PW, PX = PB .. 'w', PB .. 'x'
local me = owner .. '\t' .. token
local now = now_ms()
-- The server may have lost its data (see fenced): nothing is granted, and the reply says so
-- (the caller then publishes again the pool's numbers if the server lost them too).
local fence = fenced(now, tonumber(ttl), prefix .. 'fence')

-- The token holds a slot of the pool already (this pick is sent again): that slot, as the
-- first run answered; nothing else is touched. One key read: the cost does not grow with the
-- pool.
local TAKEN = PB .. 't:' .. token
local taken = redis.call('GET', TAKEN)
if taken then
  local number, tag = string.match(taken, '^(.-)\t(.*)$')
  local base = member_base(prefix, tag, number)
  local expiry = tonumber(redis.call('ZSCORE', base .. 'h', token))
  local raw = redis.call('HGET', base .. 'm', token)
  if expiry and raw and lapse_of(expiry, raw) > now then
    local held = parse_meta(raw) == owner
    if held and skey ~= '' then  -- asked again in a session: it keeps the session alive
      keep_session(record_of(skey), owner, tonumber(ttl), now)
    end
    return {held and 1 or -1, number}
  end
end

-- The line's keys (and its arrival counter, ':ws') live as long as the latest place in it, so
-- a line whose callers gave up or died leaves nothing behind.
local function join_line()
  if not redis.call('ZSCORE', PW, me) then
    redis.call('ZADD', PW, redis.call('INCR', PB .. 'ws'), me)
  end
  redis.call('ZADD', PX, now + wait_ms, me)
  for _, key in ipairs({PW, PX, PB .. 'ws'}) do extend(key, wait_ms + 1000) end
end

-- The numbers to try, in order, at most `tries` of them. A number whose paid period lapsed by
-- the caller's calendar is passed over: it takes no try (nor a place in line: it is not
-- full) and goes to the very back once the numbers are chosen (UNPAID: behind even the
-- numbers that could not take a call), so that later picks, also while every number is full,
-- look at others first (a renewal puts it back at its load: pool_update).
local UNPAID = 2 * RESTING
local BELOW_UNPAID = '(' .. string.format('%.0f', UNPAID)  -- a score bound: below the band
local calendar = tonumber(ARGV[20]) or 0
-- The paid periods of the pool's numbers that have one (kept by pool_update from their
-- specs): PM's key with 'e' for its last letter, number -> "lapses_ms\twarn_ms". Read a page
-- of numbers at a time; a spec is read only for a number tried.
local PE = PB .. 'e'
local candidates, seen, unpaid = {}, {}, {}
local lapsed_seen = false  -- some number looked at lapsed
local function terms(numbers)
  if #numbers == 0 then return {} end
  return redis.call('HMGET', PE, unpack(numbers))
end
-- Whether the number is inside its warning window (1) or not (0), by its paid period `term`
-- (false: none); nil if it lapsed (noted in `unpaid`, to go to the band of the lapsed, unless
-- it is there: `banded`) or was looked at already.
local function look(number, term, banded)
  if seen[number] then return nil end
  seen[number] = true
  if not term then return 0 end
  local lapses, warn = string.match(term, '^(%d+)\t(%d+)$')
  if calendar >= tonumber(lapses) then
    lapsed_seen = true
    if not banded then unpaid[#unpaid + 1] = number end
    return nil
  end
  return calendar >= tonumber(warn) and 1 or 0
end
-- Whether every number of the pool lapsed, as far as one page tells: those outside the band
-- of the lapsed are fewer than `tries`, and each lapsed by the caller's calendar (a caller
-- behind others in line is told so rather than kept waiting for numbers that cannot serve).
local function every_one_lapsed()
  local numbers = redis.call('ZRANGEBYSCORE', PL, '-inf', BELOW_UNPAID, 'LIMIT', 0, tries)
  if #numbers >= tries then return false end
  if #numbers == 0 then return redis.call('EXISTS', PL) == 1 end
  for _, term in ipairs(terms(numbers)) do
    if not term or calendar < tonumber(string.match(term, '^(%d+)\t')) then return false end
  end
  return true
end
local function add(number)
  candidates[#candidates + 1] = number
end
local lapsed = redis.call('ZRANGEBYSCORE', PX, '-inf', now)
if #lapsed > 0 then
  redis.call('ZREMRANGEBYSCORE', PX, '-inf', now)
  redis.call('ZREM', PW, unpack(lapsed))
end
local first = redis.call('ZRANGE', PW, 0, 0)[1]
if first and first ~= me then
  if every_one_lapsed() then return {2, -1, 'l'} end
  if waits then
    join_line()
    return {0, -1}
  end
  return {2, -1}  -- trying once: refused, never in line
end

-- Lexicographic order of {load, warns, tie-breaker, ...}: among equals of load, the numbers
-- not about to lapse first.
local function before(a, b)
  for i = 1, 3 do
    if a[i] ~= b[i] then return a[i] < b[i] end
  end
  return a[4] < b[4]
end
-- The least loaded of a random sample of a set of the pool's numbers.
local function sample(set)
  local numbers = redis.call('SRANDMEMBER', set, tries)
  if #numbers == 0 then return end
  local scores = redis.call('ZMSCORE', PL, unpack(numbers))
  local paid = terms(numbers)
  local sampled = {}
  for i, number in ipairs(numbers) do
    local score = tonumber(scores[i]) or 0
    sampled[i] = {math.floor(score / LOAD_SCALE), 0, score, number, paid[i]}
  end
  -- Looked at in load order (not the sample's random one): the lapsed go back in that order.
  table.sort(sampled, before)
  local ranked = {}
  for _, item in ipairs(sampled) do
    local warns = look(item[4], item[5], item[3] >= UNPAID)
    if warns then
      item[2] = warns
      ranked[#ranked + 1] = item
    end
  end
  table.sort(ranked, before)
  for _, item in ipairs(ranked) do
    if #candidates < tries then add(item[4]) end
  end
end
-- Then the least loaded, in PL's order, read a page at a time until `tries` are found; the
-- loads are read only when some number is inside its warning window (to put it after its
-- equals). The band of the lapsed is left out (its size does not add to the cost of a pick),
-- but for one page of it when nothing else was found: a number another caller's calendar
-- put there may be paid by this one's, and a pool whose every number lapsed says so.
local function least_loaded()
  local ranked, warned = {}, {}
  local function rank(numbers, banded)
    local paid = terms(numbers)
    for i, number in ipairs(numbers) do
      if #candidates + #ranked < tries then
        local warns = look(number, paid[i], banded)
        if warns then
          ranked[#ranked + 1] = number
          if warns == 1 then warned[#warned + 1] = number end
        end
      end
    end
  end
  local from = 0
  while #candidates + #ranked < tries do
    local numbers = redis.call('ZRANGEBYSCORE', PL, '-inf', BELOW_UNPAID, 'LIMIT', from, tries)
    rank(numbers, false)
    if #numbers < tries then break end
    from = from + tries
  end
  if #candidates + #ranked == 0 then
    local band = string.format('%.0f', UNPAID)
    rank(redis.call('ZRANGEBYSCORE', PL, band, '+inf', 'LIMIT', 0, tries), true)
  end
  if #warned == 0 then
    for _, number in ipairs(ranked) do add(number) end
    return
  end
  local warns = {}
  for _, number in ipairs(warned) do warns[number] = 1 end
  local scores = redis.call('ZMSCORE', PL, unpack(ranked))
  local items = {}
  for i, number in ipairs(ranked) do
    items[i] = {math.floor(tonumber(scores[i]) / LOAD_SCALE), warns[number] or 0, i, number}
  end
  table.sort(items, before)
  for _, item in ipairs(items) do add(item[4]) end
end

if strategy == 'local' then
  if area ~= '' then sample(PB .. 'a:' .. area) end
  if region ~= '' then sample(PB .. 'r:' .. region) end
elseif strategy == 'sticky' and callee ~= '' then
  local last = redis.call('GET', PB .. 'k:' .. callee)
  if last and redis.call('HEXISTS', PM, last) == 1 then
    local banded = (tonumber(redis.call('ZSCORE', PL, last)) or 0) >= UNPAID
    if look(last, redis.call('HGET', PE, last), banded) then add(last) end
  end
end
if strategy == 'round-robin' then
  local size = redis.call('ZCARD', PO)
  if size == 0 then
    -- No number was full: no place in line (as below), and a place it had goes.
    if first == me then leave_pool_line(PB, me, channels, pool) end
    return {2, -1}
  end
  -- PC holds the place after the last number whose turn it was (not a count of picks), so
  -- that the turn passes on in order also after numbers were added or removed; a lapsed
  -- number has no turn: the next one takes it. At most 4 * tries places are looked at (a run
  -- of lapsed numbers does not add to the cost of a pick): past a run that long with no
  -- number found, the turn goes on from after it, and this pick takes the least loaded.
  local start = (tonumber(redis.call('GET', PC)) or 0) % size
  local at, left, turn = start, math.min(size, 4 * tries), nil
  while #candidates < tries and left > 0 do
    local last = math.min(at + tries, size, at + left) - 1
    local numbers = redis.call('ZRANGE', PO, at, last)
    local paid = terms(numbers)
    local scores = redis.call('ZMSCORE', PL, unpack(numbers))
    for i, number in ipairs(numbers) do
      local banded = (tonumber(scores[i]) or 0) >= UNPAID
      if #candidates < tries and look(number, paid[i], banded) then
        add(number)
        turn = turn or at + i - 1
      end
    end
    at, left = last + 1, left - (last + 1 - at)
    if at >= size then at = 0 end
  end
  redis.call('SET', PC, turn and turn + 1 or at)
  if #candidates == 0 then least_loaded() end
else
  least_loaded()
end
for _, number in ipairs(unpaid) do
  redis.call('ZADD', PL, 'XX', UNPAID + redis.call('INCR', PS) % LOAD_SCALE, number)
end

local earliest = nil
local full = false  -- some number was full: a slot that frees may serve the caller
for _, number in ipairs(candidates) do
  local f = split_tabs(redis.call('HGET', PM, number))
  -- (a paid period adds two fields after the region: the groups start after them)
  local groups_at = ((#f - 7) % 4 == 2) and 10 or 8
  local tag = f[1]
  local base = member_base(prefix, tag, number)
  local keys = {base .. 'h', base .. 'q', base .. 'w', base .. 'm', base .. 'p', base .. 'r', base .. 'r'}
  local args = {token, owner_arg, f[2], ttl, hold, '0', number, channels, version}
  local groups = (#f - groups_at + 1) / 4
  local with_callee = callee ~= '' and callee_windows ~= ''
  if f[3] ~= '' or f[4] ~= '' or groups > 0 or with_callee then
    if with_callee then keys[7] = prefix .. '{' .. tag .. '}:c:' .. callee end
    args[10], args[11], args[12], args[13] = f[3], tz, f[4], f[5]
    args[14] = with_callee and callee_windows or ''
    for g = 0, groups - 1 do
      local at = groups_at + g * 4
      local gbase = prefix .. '{' .. tag .. '}:g:' .. f[at] .. ':'
      for _, suffix in ipairs({'h', 'r', 'w', 'p'}) do keys[#keys + 1] = gbase .. suffix end
      args[#args + 1] = f[at + 1]
      args[#args + 1] = f[at + 2]
      args[#args + 1] = f[at + 3]
      args[#args + 1] = f[at]
    end
    args[#args + 1] = (priority >= 1) and '1' or '0'  -- it may take the groups' reserves
  end
  keys[#keys + 1] = S  -- the pool's numbers share its slot, and its stamp
  bind(keys, args)
  local reply = body_acquire()
  local load = live_leases(now) * LOAD_SCALE
  if reply[1] == 1 then
    -- Remembered as long as the lease may live: a session lease is not renewed one by one.
    local remember = skey ~= '' and ((tonumber(hold) > 0) and hold or SESSION_HOLD_MAX) or ttl
    redis.call('SET', TAKEN, number .. '\t' .. tag, 'PX', remember)
    redis.call('ZADD', PL, 'XX', load + redis.call('INCR', PS) % LOAD_SCALE, number)
    if strategy == 'sticky' and callee ~= '' then
      redis.call('SET', PB .. 'k:' .. callee, number, 'PX', sticky_ms)
    end
    if first == me then leave_pool_line(PB, me, channels, pool) end
    return {1, number}
  end
  if reply[1] == -1 then return {-1, number} end
  if reply[3] == 'f' then
    -- The fence holds every grant on this server (see fenced): no number can take the call
    -- before it ends, and none is moved back for it.
    full, earliest = true, tonumber(reply[2])
    break
  end
  -- It could not take the call: to the back, behind every number not known to be unable, so
  -- that the next picks look at others first (a release through the pool brings it back).
  redis.call('ZADD', PL, 'XX', RESTING + redis.call('INCR', PS) % LOAD_SCALE, number)
  if reply[1] == 2 or reply[1] == 5 then full = true end
  local retry = tonumber(reply[2])
  if retry and retry >= 0 and (not earliest or retry < earliest) then earliest = retry end
end
-- A place in line only for a caller that a freed slot may serve: one held back by rate
-- windows (its callee's, say) or by states alone would keep every other caller waiting.
if waits and full then
  join_line()
elseif first == me then
  leave_pool_line(PB, me, channels, pool)
end
-- None to try but some lapsed: every number lapsed (when none is found, the choice looks at
-- every number of the pool).
if #candidates == 0 and lapsed_seen and not fence then return {2, -1, 'l'} end
return {2, earliest or -1, fence and 'f' or nil}
