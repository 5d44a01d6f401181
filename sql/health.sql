-- Cached health check (src/checks/health.rs).

COMMENT ON FUNCTION @extschema@.health_check() IS
'Service health as jsonb: status (healthy|degraded|unhealthy), checks, checked_at, cached, age_ms, cache (shared|backend). A result is reused for pg_runbook.health_cache_ttl by every backend (in shared memory when preloaded, per backend otherwise).';

COMMENT ON FUNCTION @extschema@.health_live() IS
'Liveness probe: true whenever the server can run a query.';
