-- Python twin: MemoryBackend.release_owner (backends/memory/_owners.py).
-- Remove every lease and place in line of one owner on one number.
-- KEYS: H Q W M P R C, then the group keys (see _common.lua)
-- ARGV[1] owner, ARGV[2] number, ARGV[3] channel prefix (an owner that is a session: its
-- life is ended by keepalive.lua once its leases on every number went)
-- Returns how many entries were removed.
local now = now_ms()
purge(now)
local removed = 0
local all = redis.call('HGETALL', M)
for i = 1, #all, 2 do
  local token = all[i]
  local owner, ttl, _, _, _, _, skey = parse_meta(all[i + 1])
  if owner == ARGV[1] then
    if redis.call('ZSCORE', H, token) then mark_ended(owner, token, ttl, now) end
    if skey ~= '' then redis.call('SREM', sessions_set(), token) end
    leave_groups(ARGV[1], ARGV[2], token, ARGV[3], now)
    redis.call('ZREM', H, token)
    redis.call('ZREM', Q, token)
    redis.call('ZREM', W, token)
    redis.call('HDEL', M, token)
    removed = removed + 1
  end
end
local queued = promote(now, redis.call('ZCARD', Q), ARGV[2], ARGV[3])
touch(now, queued)
return removed
