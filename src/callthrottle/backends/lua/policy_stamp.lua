-- Python twin: MemoryBackend.raise_stamps (backends/memory/_published.py: its one stamp).
-- Raise one slot's policy stamp to a version just published (see policy_stale): on a Cluster,
-- the publisher raises every slot's, one call per slot.
-- KEYS[1] S   the slot's policy stamp
-- ARGV[1] the stamp of the version published
-- Returns the slot's stamp afterwards: higher than the one given when a process decided here
-- with a policy stamped higher (one the server lost the document of).
raise_stamp(KEYS[1], tonumber(ARGV[1]), now_ms())
return tonumber(redis.call('ZSCORE', KEYS[1], 'v'))
