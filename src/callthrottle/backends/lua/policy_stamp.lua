-- Python twin: MemoryBackend.raise_stamps (backends/memory/_published.py: its one stamp).
-- flags: allow-cross-slot-keys (the slots of one Cluster node, in one call)
-- Raise policy stamps to a version just published (see policy_stale): on a Cluster, the
-- publisher raises every slot's, one call per master with the stamps of the slots it serves.
-- KEYS[1] S   a stamp of the node (it routes the call there)
-- ARGV[1] the stamp of the version published
-- ARGV[2..] the stamps of other slots of the same node (undeclared: the server lets a
-- function with this flag reach keys of its node's other slots)
-- Returns the highest stamp afterwards: higher than the one given when a process decided
-- with a policy stamped higher (one the server lost the document of).
local version, now = tonumber(ARGV[1]), now_ms()
local stamps = {KEYS[1]}
for i = 2, #ARGV do stamps[#stamps + 1] = ARGV[i] end
local highest = 0
for _, stamp in ipairs(stamps) do
  raise_stamp(stamp, version, now)
  highest = math.max(highest, stamp_of(stamp)[1])
end
return highest
