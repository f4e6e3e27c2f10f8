-- Python twin: MemoryBackend.release_owner (backends/memory.py).
-- Remove every lease and place in line of one owner on one number.
-- KEYS: H Q W M P R (see _common.lua)
-- ARGV[1] owner, ARGV[2] number, ARGV[3] channel prefix, ARGV[4] (optional) the record of
-- the owner's session on the number's tag (its life ends with its owner's leases)
-- Returns how many entries were removed.
local now = now_ms()
if ARGV[4] then end_session(ARGV[4], ARGV[1], now) end
purge(now)
local removed = 0
local all = redis.call('HGETALL', M)
for i = 1, #all, 2 do
  local token = all[i]
  local owner, ttl, _, _, _, _, skey = parse_meta(all[i + 1])
  if owner == ARGV[1] then
    if redis.call('ZSCORE', H, token) then mark_ended(owner, token, ttl, now) end
    if skey ~= '' then
      end_session(record_of(skey), owner, now)  -- the session's life ends with its leases
      redis.call('SREM', sessions_set(), token)
    end
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
