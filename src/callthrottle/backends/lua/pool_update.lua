-- Add numbers to a pool (or update what it knows of them) and take others out.
-- KEYS: PM PL PO (see pick.lua)
-- ARGV[1] key prefix, ARGV[2] how many numbers to add n, then n (number, spec) pairs, then the
-- numbers to take out.
-- Returns how many numbers the pool has afterwards.
local PM, PL, PO = KEYS[1], KEYS[2], KEYS[3]
local prefix, adding = ARGV[1], tonumber(ARGV[2])
for i = 3, 2 + 2 * adding, 2 do
  local number, spec = ARGV[i], ARGV[i + 1]
  redis.call('HSET', PM, number, spec)
  if not redis.call('ZSCORE', PO, number) then
    local last = redis.call('ZRANGE', PO, -1, -1, 'WITHSCORES')
    redis.call('ZADD', PO, (#last > 0) and (tonumber(last[2]) + 1) or 1, number)
    local tag = string.match(spec, '^([^\t]*)')
    local holding = redis.call('ZCARD', member_base(prefix, tag, number) .. 'h')
    redis.call('ZADD', PL, holding * LOAD_SCALE, number)
  end
end
for i = 3 + 2 * adding, #ARGV do
  redis.call('HDEL', PM, ARGV[i])
  redis.call('ZREM', PL, ARGV[i])
  redis.call('ZREM', PO, ARGV[i])
end
return redis.call('HLEN', PM)
