-- Python twin: MemoryBackend.release_owner, its part for pool and group lines
-- (backends/memory/_owners.py).
-- Remove every place of one owner from a pool's line or a group's line (release_owner's part
-- for the callers that wait for a pool or for a group, not in a number's line); when the first
-- place was the owner's (in a group's line, or the first of those that may take its reserve),
-- the next in line is told to ask again.
-- KEYS[1] line order (a pool's ':w', a group's GQ), KEYS[2] line lapses (':x', GW)
-- ARGV[1] owner, ARGV[2] channel prefix, ARGV[3] pool name ('' for a group's line)
-- Returns how many live places were removed.
local order, lapses, channels, pool = KEYS[1], KEYS[2], ARGV[2], ARGV[3]
if redis.call('TYPE', order).ok ~= 'zset' then return 0 end  -- gone meanwhile
local now = now_ms()
-- A group's line has its callers that may take the reserve beside it (GV; nil for a pool).
local gv = (pool == '') and reserve_line(lapses) or nil
local lapsed = redis.call('ZRANGEBYSCORE', lapses, '-inf', now)
if #lapsed > 0 then
  redis.call('ZREMRANGEBYSCORE', lapses, '-inf', now)
  each_chunk('ZREM', order, lapsed)
  if gv then each_chunk('ZREM', gv, lapsed) end
end
local lead = ARGV[1] .. '\t'
local first = redis.call('ZRANGE', order, 0, 0)[1]
local mine = {}
for _, m in ipairs(redis.call('ZRANGE', order, 0, -1)) do
  if string.sub(m, 1, #lead) == lead then mine[#mine + 1] = m end
end
if #mine == 0 then return 0 end
each_chunk('ZREM', order, mine)
each_chunk('ZREM', lapses, mine)
local lost_first = string.sub(first, 1, #lead) == lead
if gv then
  local first_reserved = redis.call('ZRANGE', gv, 0, 0)[1]
  if first_reserved then
    each_chunk('ZREM', gv, mine)
    lost_first = lost_first or string.sub(first_reserved, 1, #lead) == lead
  end
end
if lost_first then
  if pool ~= '' then
    nudge_pool_line(string.sub(order, 1, -2), channels, pool)
  else
    nudge_group(lapses, channels, 1, now)
  end
end
return #mine
