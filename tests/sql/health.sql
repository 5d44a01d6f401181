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

-- The status follows the worst check: a failing connections threshold makes it unhealthy, and the
-- failing check, only it, is explained under problems.
SET pg_runbook.health_cache_ttl = 0;
SET pg_runbook.connections_warn_pct = 0;
SET pg_runbook.connections_fail_pct = 0;
SELECT h->>'status' AS status, h->'checks'->>'connections' AS connections,
       h->'problems'->'connections' ? 'observed' AS failing_check_has_observed,
       h->'problems'->'connections' ? 'detail' AS failing_check_has_detail,
       h->'problems' ? 'replication_lag' AS passing_check_is_a_problem
FROM health_check() h;

-- Written from the cached parts in jsonb's binary form, the result reads back exactly as its text.
SET pg_runbook.health_cache_ttl = '1h';
SELECT h = h::text::jsonb AS equal_to_its_text, h::text = h::text::jsonb::text AS same_text,
       jsonb_typeof(h->'age_ms') AS age_ms_type, jsonb_typeof(h->'cached') AS cached_type
FROM health_check() h;
RESET ALL;
