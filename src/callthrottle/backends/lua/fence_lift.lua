-- Python twin: MemoryBackend.lift_fence (backends/memory/__init__.py): it has nothing to lift.
-- End the fence now (see fenced in _common.lua): for an operator who knows that no call is up
-- on this server, e.g. a new deployment, or a test that starts its own server.
-- KEYS: none
-- ARGV[1] fence marker: the key prefix's marker key ("<prefix>fence"; not used on a Cluster)
-- Returns 1.
lift_fence(now_ms(), ARGV[1])
return 1
