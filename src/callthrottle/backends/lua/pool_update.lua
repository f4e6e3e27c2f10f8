-- Python twin: MemoryBackend.pool_update (backends/memory/_pools.py).
-- Add numbers to a pool (or update what it knows of them) and take others out.
-- KEYS: PM PL PO S (see pick.lua)
-- ARGV[1] key prefix, ARGV[2] adding: how many numbers to add, n,
-- ARGV[3] the stamp of the published policy the specs come from (0: none; see
-- policy_stale: an older one than the slot's stamp writes nothing),
-- ARGV[4..] number spec pairs: n (number, spec) pairs, then the numbers to take out.
-- Each number is also kept in its area's and region's sets (the local
-- strategy): PM's key with ':a:<area>' and ':r:<region>' in place of its last letter's suffix.
-- A number added, or whose paid period changed, takes its place in PL at its live load.
-- The paid periods of the numbers that have one are also kept apart, for pick to read many
-- at once: PM's key with 'e' for its last letter, number -> "lapses_ms\twarn_ms".
-- Returns how many numbers the pool has afterwards, or -1 when a newer policy than the
-- caller's is published (nothing is written).
local PM, PL, PO = KEYS[1], KEYS[2], KEYS[3]
if policy_stale(ARGV[3], KEYS[4]) then return -1 end
local PB = string.sub(PM, 1, -2)  -- the pool's keys' common start
local prefix, adding = ARGV[1], tonumber(ARGV[2])

-- When a spec's paid period lapses (ms since the epoch, 0: none tracked; see pick.lua).
local function lapses(f)
  return (#f - 7) % 4 == 2 and (tonumber(f[8]) or 0) or 0
end

-- Take a number out of the area and region sets its spec put it in; its old spec's fields
-- (nil: it was not in the pool).
local function unplace(number)
  local old = redis.call('HGET', PM, number)
  if not old then return nil end
  local f = split_tabs(old)
  if f[6] ~= '' then redis.call('SREM', PB .. 'a:' .. f[6], number) end
  if f[7] ~= '' then redis.call('SREM', PB .. 'r:' .. f[7], number) end
  return f
end

for i = 4, 3 + 2 * adding, 2 do
  local number, spec = ARGV[i], ARGV[i + 1]
  local old = unplace(number)
  redis.call('HSET', PM, number, spec)
  local f = split_tabs(spec)
  if f[6] ~= '' then redis.call('SADD', PB .. 'a:' .. f[6], number) end
  if f[7] ~= '' then redis.call('SADD', PB .. 'r:' .. f[7], number) end
  if lapses(f) > 0 then
    redis.call('HSET', PB .. 'e', number, f[8] .. '\t' .. f[9])
  else
    redis.call('HDEL', PB .. 'e', number)
  end
  local joins = not redis.call('ZSCORE', PO, number)
  if joins then
    local last = redis.call('ZRANGE', PO, -1, -1, 'WITHSCORES')
    redis.call('ZADD', PO, (#last > 0) and (tonumber(last[2]) + 1) or 1, number)
  end
  -- A number that joins, or whose paid period changed (a renewal: a lapsed number rested
  -- behind the others), takes its place at its load.
  if joins or (old and lapses(old) ~= lapses(f)) then
    local tag = f[1]
    -- Its live leases: the number's keys stand in for this call's while they are counted.
    local pool_h, pool_m = H, M
    H, M = member_base(prefix, tag, number) .. 'h', member_base(prefix, tag, number) .. 'm'
    local holding = live_leases(now_ms())
    H, M = pool_h, pool_m
    local moved = redis.call('INCR', PB .. 's') % LOAD_SCALE  -- behind those at its load
    redis.call('ZADD', PL, holding * LOAD_SCALE + moved, number)
  end
end
for i = 4 + 2 * adding, #ARGV do
  unplace(ARGV[i])
  redis.call('HDEL', PM, ARGV[i])
  redis.call('HDEL', PB .. 'e', ARGV[i])
  redis.call('ZREM', PL, ARGV[i])
  redis.call('ZREM', PO, ARGV[i])
end
local size = redis.call('HLEN', PM)
-- A pool without numbers leaves nothing behind: its counters (PC, PS: PM's key with 'c' and
-- 's' for its last letter) start again if numbers are added later.
if size == 0 then redis.call('DEL', PB .. 'c', PB .. 's') end
return size
