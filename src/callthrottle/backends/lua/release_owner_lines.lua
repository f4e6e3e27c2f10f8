-- Python twin: MemoryBackend.release_owner (its part for pool and group lines) (backends/memory.py).
-- Remove every place of one owner from a pool's line or a group's line (release_owner's part
-- for the callers that wait for a pool or for a group, not in a number's line); when the first
-- place was the owner's, the next in line is told to ask again.
-- KEYS[1] the line's order (a pool's ':w', a group's GQ), KEYS[2] its lapses (':x', GW)
-- ARGV[1] owner, ARGV[2] channel prefix, ARGV[3] the pool's name ('' for a group's line)
-- Returns how many live places were removed. (Memory twin: the end of
-- MemoryBackend.release_owner.)
local order, lapses, channels, pool = KEYS[1], KEYS[2], ARGV[2], ARGV[3]
if redis.call('TYPE', order).ok ~= 'zset' then return 0 end  -- gone meanwhile
local now = now_ms()
local lapsed = redis.call('ZRANGEBYSCORE', lapses, '-inf', now)
if #lapsed > 0 then
  redis.call('ZREMRANGEBYSCORE', lapses, '-inf', now)
  each_chunk('ZREM', order, lapsed)
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
if string.sub(first, 1, #lead) == lead then
  if pool ~= '' then
    nudge_pool_line(string.sub(order, 1, -2), channels, pool)
  else
    nudge_group(lapses, channels, 1, now)
  end
end
return #mine
