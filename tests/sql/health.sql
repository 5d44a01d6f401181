-- health_check() and health_live(): the shape of the result and the shared cache.

SELECT health_live();

-- The shared result is computed at server- and database-level settings only. With a database-level
-- TTL of 0, every call computes a fresh result.
ALTER DATABASE :"DBNAME" SET pg_runbook.health_cache_ttl = 0;
\c
SELECT (h->>'cached')::bool AS cached, h->>'cache' AS cache,
       h->>'status' IN ('healthy', 'degraded', 'unhealthy') AS status_is_a_known_word,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(h) k) AS keys,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(h->'checks') k) AS checks
FROM health_check() h;

-- Within the TTL, the next call is served from the cache, with the same checked_at.
ALTER DATABASE :"DBNAME" SET pg_runbook.health_cache_ttl = '1h';
\c
CREATE TEMP TABLE first AS SELECT health_check() AS h;
SELECT (h->>'cached')::bool AS cached, h->>'cache' AS cache,
       h->'checked_at' = (SELECT h->'checked_at' FROM first) AS same_checked_at,
       (h->>'age_ms')::int >= 0 AS has_age
FROM health_check() h;

-- A session that overrides a setting gets its own answer at its own thresholds: computed, not
-- cached, saying why. A failing connections threshold makes it unhealthy, and the failing check,
-- only it, is explained under problems.
SET pg_runbook.connections_warn_pct = 0;
SET pg_runbook.connections_fail_pct = 0;
SELECT h->>'status' AS status, h->'checks'->>'connections' AS connections,
       (h->>'cached')::bool AS cached, h->>'cache' AS cache, h->>'private_because' AS private_because,
       h->'problems'->'connections' ? 'observed' AS failing_check_has_observed,
       h->'problems'->'connections' ? 'detail' AS failing_check_has_detail,
       h->'problems' ? 'replication_lag' AS passing_check_is_a_problem
FROM health_check() h;

-- ... and it did not change what the other sessions are served: still the shared result.
RESET pg_runbook.connections_warn_pct;
RESET pg_runbook.connections_fail_pct;
SELECT (h->>'cached')::bool AS cached, h->>'cache' AS cache,
       h->'checked_at' = (SELECT h->'checked_at' FROM first) AS same_checked_at,
       h->'checks' = (SELECT h->'checks' FROM first) AS same_checks
FROM health_check() h;
-- A TTL of 0 set for the session cannot make the shared cache recompute either: the session
-- gets a private answer.
SET pg_runbook.health_cache_ttl = 0;
SELECT h->>'cache' AS cache, h->>'private_because' AS private_because FROM health_check() h;
RESET pg_runbook.health_cache_ttl;

-- Written from the cached parts in jsonb's binary form, the result reads back exactly as its text.
SELECT h = h::text::jsonb AS equal_to_its_text, h::text = h::text::jsonb::text AS same_text,
       jsonb_typeof(h->'age_ms') AS age_ms_type, jsonb_typeof(h->'cached') AS cached_type
FROM health_check() h;
ALTER DATABASE :"DBNAME" RESET pg_runbook.health_cache_ttl;
