-- Request metrics, rollups, SLO compliance and rollback triggers, driven by generated traffic
-- whose percentiles are known. Timestamps are explicit (a day ago, each scenario in its own hour)
-- and every judgement passes as_of, so nothing depends on the clock.
\set VERBOSITY terse
SELECT date_bin('5 minutes', now() - interval '1 day', '2000-01-01') AS t0 \gset

-- traffic(endpoint, at, n, slow, slow_ms, errors, hits): n requests in the bucket starting at
-- `at`; the first `slow` take slow_ms, the others 51..(50+n) ms; the last `errors` answer 500;
-- the first `hits` were cache hits.
CREATE FUNCTION regress.traffic(ep text, at timestamptz, n int, slow int, slow_ms float8, errors int, hits int)
RETURNS bigint LANGUAGE sql AS $$
  SELECT record_requests(jsonb_agg(jsonb_build_object(
           'endpoint', ep,
           'duration_ms', CASE WHEN i <= slow THEN slow_ms ELSE 50 + i END,
           'status_code', CASE WHEN i > n - errors THEN 500 ELSE 200 END,
           'cache_hit', i <= hits,
           'method', 'GET',
           'at', at + (i % 290) * interval '1 second')))
  FROM generate_series(1, n) i
$$;
-- bucket_row(endpoint, bucket): a rollup row's stable columns.
CREATE FUNCTION regress.bucket_row(ep text, b timestamptz)
RETURNS TABLE (requests bigint, errors bigint, err_rate float8, p50_ms float8, p95_ms float8, p99_ms float8, max_ms float8, cache_hit_rate_percent float8)
LANGUAGE sql AS $$
  SELECT requests, errors, round(err_rate::numeric, 4)::float8, round(p50_ms::numeric, 1)::float8,
         round(p95_ms::numeric, 1)::float8, round(p99_ms::numeric, 1)::float8, max_ms, round(cache_hit_rate_percent::numeric, 1)::float8
  FROM performance_analytics_5min WHERE bucket = b AND endpoint IS NOT DISTINCT FROM ep
$$;

-- ---- ingest and validation ---------------------------------------------------------------------
SELECT record_request('/health', 12.5, 200, true, 'GET', :'t0') > 0 AS recorded;
SELECT regress.error_of($$SELECT record_request('/x', -1, 200)$$);
SELECT regress.error_of($$SELECT record_request('/x', 'NaN', 200)$$);
SELECT regress.error_of($$SELECT record_request('/x', 'Infinity', 200)$$);
SELECT regress.error_of($$SELECT record_request('/x', 10, 99)$$);
SELECT regress.error_of($$SELECT record_request(NULL, 10, 200)$$);
-- A batch with one bad element stores nothing of the batch.
SELECT regress.error_of($$SELECT record_requests('[{"endpoint":"/x","duration_ms":1,"status_code":200},
                                                    {"endpoint":"/x","duration_ms":2,"status_code":600}]')$$);
SELECT regress.error_of($$SELECT record_requests('[{"endpoint":"/x","duration_ms":1,"status_code":200},
                                                    {"endpoint":"/x","duration_ms":"-Infinity","status_code":200}]')$$);
SELECT regress.error_of($$SELECT record_requests('[{"endpoint":"/x","duration_ms":1,"status_code":200},
                                                    {"endpoint":"/x","duration_ms":-0.5,"status_code":200}]')$$);
SELECT count(*) AS raw_rows_after_refused_input FROM performance_metrics;
SELECT rollup_metrics() AS folded;

-- ---- P99 above 2000 ms in one bucket is CRITICAL at once --------------------------------------
SELECT regress.traffic('/search', :'t0'::timestamptz + interval '1 hour', 100, 2, 2500, 0, 80);
SELECT rollup_metrics() AS folded;
SELECT * FROM regress.bucket_row('/search', :'t0'::timestamptz + interval '1 hour');
SELECT slo, level, observed, threshold, breached_buckets, required_buckets, detail
FROM check_slo_compliance('15 minutes', '/search', :'t0'::timestamptz + interval '1 hour 5 minutes');
-- The bucket still running at as_of is not judged.
SELECT slo, level FROM check_slo_compliance('15 minutes', '/search', :'t0'::timestamptz + interval '1 hour 4 minutes')
WHERE slo = 'p99_latency_critical';

-- ---- P95 above 600 ms in one bucket is OK; in two consecutive buckets it is WARN --------------
SELECT regress.traffic('/cart', :'t0'::timestamptz + interval '2 hours', 100, 6, 700, 0, 50);
SELECT rollup_metrics() AS folded;
SELECT slo, level, observed, breached_buckets, required_buckets
FROM check_slo_compliance('15 minutes', '/cart', :'t0'::timestamptz + interval '2 hours 10 minutes')
WHERE slo = 'p95_latency_warn';
SELECT regress.traffic('/cart', :'t0'::timestamptz + interval '2 hours 5 minutes', 100, 6, 700, 0, 50);
SELECT rollup_metrics() AS folded;
SELECT slo, level, observed, breached_buckets, required_buckets
FROM check_slo_compliance('15 minutes', '/cart', :'t0'::timestamptz + interval '2 hours 10 minutes');

-- ---- 3% errors for two buckets pages and fires the 1% rollback trigger ------------------------
SELECT regress.traffic('/checkout', :'t0'::timestamptz + interval '3 hours', 100, 0, 0, 3, 60),
       regress.traffic('/checkout', :'t0'::timestamptz + interval '3 hours 5 minutes', 100, 0, 0, 3, 60);
SELECT rollup_metrics() AS folded;
SELECT slo, level, observed, breached_buckets
FROM check_slo_compliance('15 minutes', as_of => :'t0'::timestamptz + interval '3 hours 10 minutes')
WHERE slo LIKE 'error_rate%';
SELECT trigger, fired, observed, threshold, detail
FROM should_rollback('15 minutes', :'t0'::timestamptz + interval '3 hours 10 minutes');
SELECT regress.error_of(format('SELECT * FROM assert_no_rollback(%L, %L)', '15 minutes', :'t0'::timestamptz + interval '3 hours 10 minutes'));
-- One bucket of errors is not enough to roll back.
SELECT count(*) FILTER (WHERE fired) AS fired
FROM assert_no_rollback('15 minutes', :'t0'::timestamptz + interval '3 hours 5 minutes');
SELECT objective, requests, errors, round(budget_consumed::numeric, 2) AS budget_consumed,
       round(burn_rate_5m::numeric, 1) AS burn_5m, round(burn_rate_1h::numeric, 1) AS burn_1h, fast_burn, slow_burn
FROM slo_error_budget(0.999, '30 days', :'t0'::timestamptz + interval '3 hours 10 minutes');

-- ---- a low cache hit rate for two buckets fires its trigger -----------------------------------
SELECT regress.traffic('/feed', :'t0'::timestamptz + interval '4 hours', 50, 0, 0, 0, 5),
       regress.traffic('/feed', :'t0'::timestamptz + interval '4 hours 5 minutes', 50, 0, 0, 0, 5);
SELECT rollup_metrics() AS folded;
SELECT trigger, fired, observed FROM should_rollback('15 minutes', :'t0'::timestamptz + interval '4 hours 10 minutes')
WHERE trigger = 'cache_hit_rate';

-- ---- late rows change the right bucket, and only it -------------------------------------------
SELECT bucket - :'t0'::timestamptz AS bucket, endpoint, requests FROM performance_analytics_5min
WHERE endpoint = '/cart' ORDER BY 1;
SELECT regress.traffic('/cart', :'t0'::timestamptz + interval '2 hours', 10, 10, 5000, 10, 0);
SELECT rollup_metrics() AS folded;
SELECT bucket - :'t0'::timestamptz AS bucket, endpoint, requests, errors, max_ms FROM performance_analytics_5min
WHERE endpoint = '/cart' OR (endpoint IS NULL AND bucket BETWEEN :'t0'::timestamptz + interval '2 hours' AND :'t0'::timestamptz + interval '2 hours 5 minutes')
ORDER BY 1, 2;

-- ---- the rollups match a from-scratch recomputation over the raw rows -------------------------
WITH raw AS (
  SELECT date_bin('5 minutes', created_at, '2000-01-01') AS bucket, endpoint,
         count(*) AS requests, count(*) FILTER (WHERE status_code >= 500) AS errors,
         max(duration_ms) AS max_ms, avg(duration_ms) AS avg_ms,
         count(*) FILTER (WHERE cache_hit) AS cache_hits,
         percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50,
         percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95,
         percentile_disc(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99
  FROM performance_metrics GROUP BY GROUPING SETS ((1, 2), (1))
)
SELECT count(*) AS buckets,
       count(*) FILTER (WHERE r.requests = p.requests AND r.errors = p.errors AND r.max_ms = p.max_ms
                          AND abs(r.avg_ms - p.avg_ms) < 1e-9 AND r.cache_hits = p.cache_hits) AS counts_match,
       count(*) FILTER (WHERE abs(p.p50_ms - r.p50) <= 0.01 * r.p50 AND abs(p.p95_ms - r.p95) <= 0.01 * r.p95
                          AND abs(p.p99_ms - r.p99) <= 0.01 * r.p99) AS percentiles_within_1pct,
       (SELECT count(*) FROM performance_analytics_5min) AS rollup_rows
FROM raw r JOIN performance_analytics_5min p ON p.bucket = r.bucket AND p.endpoint IS NOT DISTINCT FROM r.endpoint;

-- Sketches merge across buckets: a window's percentile from sketch_union() vs percentile_disc.
SELECT round(sketch_quantile(sketch_union(sketch), 0.95)::numeric, 1) AS p95_window_sketch,
       (SELECT percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms) FROM performance_metrics) AS p95_window_exact
FROM performance_analytics_5min WHERE endpoint IS NOT NULL;

-- ---- retention: old raw rows are pruned by the rollup, after they are folded ------------------
SELECT record_request('/archive', 40, 200, at => now() - interval '8 days') > 0 AS recorded;
SELECT rollup_metrics() AS folded;
SELECT count(*) AS raw_archive_rows FROM performance_metrics WHERE endpoint = '/archive';
SELECT requests FROM performance_analytics_5min WHERE endpoint = '/archive';

-- ---- materialized view refresh failures -------------------------------------------------------
-- Real failed refreshes (a view whose query divides by zero once a 0 arrives): two do not fire the
-- "more than 2 refresh failures" trigger, the third does. Earlier files' failures are cleared first.
DELETE FROM mv_refresh_log WHERE status = 'failed';
CREATE TABLE mv_fragile_src (x int);
INSERT INTO mv_fragile_src VALUES (1);
CREATE MATERIALIZED VIEW mv_fragile AS SELECT 1 / x AS y FROM mv_fragile_src;
INSERT INTO mv_fragile_src VALUES (0);
SET client_min_messages = warning;  -- the per-view NOTICEs carry durations
SELECT status, error FROM refresh_materialized_views_staggered(name_pattern => 'mv_fragile');
SELECT status FROM refresh_materialized_views_staggered(name_pattern => 'mv_fragile');
SELECT trigger, fired, observed FROM should_rollback() WHERE trigger = 'mv_refresh_failures';
SELECT status FROM refresh_materialized_views_staggered(name_pattern => 'mv_fragile');
RESET client_min_messages;
SELECT trigger, fired, observed FROM should_rollback() WHERE trigger = 'mv_refresh_failures';
DROP MATERIALIZED VIEW mv_fragile;
DROP TABLE mv_fragile_src;

-- ---- the runbooks' own spelling works, and arguments are checked ------------------------------
SELECT count(*) AS rules FROM (SELECT check_slo_compliance()) c;
SELECT regress.error_of($$SELECT * FROM check_slo_compliance(NULL)$$);
SELECT regress.error_of($$SELECT * FROM check_slo_compliance('1 minute')$$);
SELECT regress.error_of($$SELECT * FROM slo_error_budget(1.5)$$);
SELECT regress.error_of($$SELECT sketch_quantile('\x09'::bytea, 0.5)$$);
SELECT rollup_metrics() AS folded_again;

-- Configuration tables are kept by pg_dump.
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) u(cfg) JOIN pg_class c ON c.oid = u.cfg
WHERE e.extname = 'pg_runbook' AND c.relname IN ('slo_definitions', 'rollback_triggers') ORDER BY 1;

TRUNCATE performance_metrics, performance_analytics_5min;
