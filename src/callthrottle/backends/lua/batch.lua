-- Python twin: MemoryBackend.acquire and MemoryBackend.release (backends/memory/_acquire.py,
-- backends/memory/_slots.py), called one after another: each memory call is atomic already,
-- there is nothing to batch.
-- Several acquires and releases on one number, run in order exactly as if each had been
-- called on its own, sharing the server time, the policy read and the purge (one round trip
-- for requests that arrived together).
-- KEYS: H Q W M P R C, then the group keys (see _common.lua): the same for every operation
-- (C, no callee log, is not touched)
-- ARGV[1..] per operation: 'a' (acquire) or 'r' (release), its argument count n, then its n
-- arguments, as that function takes them
-- Returns each operation's reply, in order.
local ops = ARGV
local replies = {}
local i = 1
while i <= #ops do
  local kind, n = ops[i], tonumber(ops[i + 1])
  local args = {}
  for j = 1, n do args[j] = ops[i + 1 + j] end
  ARGV = args
  if kind == 'a' then
    replies[#replies + 1] = body_acquire()
  else
    replies[#replies + 1] = body_release()
  end
  i = i + 2 + n
end
return replies
