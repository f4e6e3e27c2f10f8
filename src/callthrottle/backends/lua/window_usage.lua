-- Python twin: MemoryBackend.window_usage (backends/memory/_views.py).
-- flags: no-writes (registered read only: the server refuses any write it would make)
-- The calls each rate window in force counts now (read only).
-- KEYS: H Q W M P R C, then the group keys (see _common.lua)
-- ARGV[1] rate windows: the configured ones ('' for none), ARGV[2] time zone offset in ms,
-- ARGV[3] warm-up daily caps by week ('' for none), ARGV[4] midnight: '1' if the warm-up's
-- days start at local midnight
-- Returns {amount, window_ms, calendar (1/0), calls counted, ...}, one group per window.
local now = now_ms()
local windows = windows_in_force(policy(), ARGV[1], ARGV[3], ARGV[4], now)
local tz_ms = tonumber(ARGV[2])
local reply = {}
for _, w in ipairs(windows) do
  reply[#reply + 1] = w[1]
  reply[#reply + 1] = w[2]
  reply[#reply + 1] = w[3] and 1 or 0
  reply[#reply + 1] = redis.call('ZCOUNT', R, window_start(w, now, tz_ms), '+inf')
end
return reply
