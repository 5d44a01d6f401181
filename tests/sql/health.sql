-- health_check() and health_live(): the shape of the result and the cache.

SELECT health_live();

-- A fresh result is not cached; the next call within the TTL is, with the same checked_at.
SET pg_runbook.health_cache_ttl = 0;
SELECT (h->>'cached')::bool AS cached, h->>'cache' AS cache,
       h->>'status' IN ('healthy', 'degraded', 'unhealthy') AS status_is_a_known_word,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(h) k) AS keys,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(h->'checks') k) AS checks
FROM health_check() h;

SET pg_runbook.health_cache_ttl = '1h';
CREATE TEMP TABLE first AS SELECT health_check() AS h;
SELECT (h->>'cached')::bool AS cached, h->'checked_at' = (SELECT h->'checked_at' FROM first) AS same_checked_at,
       (h->>'age_ms')::int >= 0 AS has_age
FROM health_check() h;

-- The status follows the worst check: a failing connections threshold makes it unhealthy.
SET pg_runbook.health_cache_ttl = 0;
SET pg_runbook.connections_warn_pct = 0;
SET pg_runbook.connections_fail_pct = 0;
SELECT h->>'status' AS status, h->'checks'->'connections'->>'status' AS connections,
       h->'checks'->'connections' ? 'detail' AS failing_check_has_detail,
       h->'checks'->'replication_lag' ? 'detail' AS passing_check_has_detail
FROM health_check() h;
RESET ALL;
