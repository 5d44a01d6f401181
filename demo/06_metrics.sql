-- Request metrics, SLO compliance and rollback triggers on generated traffic.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT n.nspname AS ext_schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_runbook' \gset
SET search_path = :"ext_schema", public;
DROP SCHEMA IF EXISTS demo_metrics CASCADE;
CREATE SCHEMA demo_metrics;
SELECT date_bin('5 minutes', now() - interval '1 hour', '2000-01-01') AS t0 \gset

\echo '== Three buckets of traffic for /api/orders: healthy, then two buckets with 3% errors and a slow tail'
SELECT record_requests(jsonb_agg(jsonb_build_object(
         'endpoint', '/api/orders',
         'duration_ms', CASE WHEN b > 0 AND i % 50 = 0 THEN 1500 ELSE 40 + (i % 120) END,
         'status_code', CASE WHEN b > 0 AND i % 100 < 3 THEN 503 ELSE 200 END,
         'cache_hit', i % 4 <> 0,
         'at', :'t0'::timestamptz + b * interval '5 minutes' + (i % 280) * interval '1 second')))
       AS recorded
FROM generate_series(0, 2) b, generate_series(1, 1000) i;

\echo '== rollup_metrics() folds them (a second call has nothing new)'
SELECT rollup_metrics() AS folded, rollup_metrics() AS folded_again;

\echo '== api_metrics_5m'
SELECT bucket - :'t0'::timestamptz AS bucket_offset, requests, round(err_rate::numeric, 4) AS err_rate,
       round(p95_ms::numeric) AS p95_ms, round(p99_ms::numeric) AS p99_ms,
       round(cache_hit_rate_percent::numeric, 1) AS cache_hit_pct
FROM api_metrics_5m WHERE bucket >= :'t0' ORDER BY bucket;

\echo '== check_slo_compliance over the three buckets'
SELECT slo, level, observed, threshold, breached_buckets, required_buckets
FROM check_slo_compliance('15 minutes', as_of => :'t0'::timestamptz + interval '15 minutes');

\echo '== should_rollback'
SELECT trigger, fired, observed, detail FROM should_rollback('15 minutes', :'t0'::timestamptz + interval '15 minutes');

\echo '== assert_no_rollback stops a deploy script'
\set ON_ERROR_STOP 0
SELECT * FROM assert_no_rollback('15 minutes', :'t0'::timestamptz + interval '15 minutes');
\set ON_ERROR_STOP 1

\echo '== error budget of a 99.9% objective'
SELECT requests, errors, round(budget_consumed::numeric, 2) AS budget_consumed,
       round(burn_rate_5m::numeric, 1) AS burn_5m, round(burn_rate_1h::numeric, 1) AS burn_1h, fast_burn, slow_burn
FROM slo_error_budget(0.999, '1 day', :'t0'::timestamptz + interval '15 minutes');
