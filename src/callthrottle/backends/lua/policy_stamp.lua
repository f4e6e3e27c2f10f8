-- Python twin: MemoryBackend.publish_policy (backends/memory/_published.py), which raises the
-- memory backend's one stamp itself.
-- Raise one slot's policy stamp to a version just published (see policy_stale): on a Cluster,
-- the publisher raises every slot's, one call per slot.
-- KEYS[1] S   the slot's policy stamp
-- ARGV[1] the version published
-- Returns 1.
raise_stamp(KEYS[1], tonumber(ARGV[1]), now_ms())
return 1
