-- Monitoring: six hours of traffic with a slow spell and an error spike, what Prometheus and
-- Grafana read from it, and the alert rules and notifications the SLO tables produce.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT n.nspname AS ext_schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_runbook' \gset
SET search_path = :"ext_schema", public;

\echo
\echo '== Six hours of traffic on /api/scans and /api/users: slow between -4h and -3h, errors between -90 and -75 min'
SELECT record_requests(jsonb_agg(jsonb_build_object(
         'endpoint', CASE WHEN i % 3 = 0 THEN '/api/users' ELSE '/api/scans' END,
         'duration_ms', 30 + (i * 7919) % 150
                        + CASE WHEN m BETWEEN 180 AND 240 AND i % 20 = 0 THEN 900 ELSE 0 END,
         'status_code', CASE WHEN m BETWEEN 75 AND 90 AND i % 12 = 0 THEN 502 ELSE 200 END,
         'cache_hit', (i + m) % 5 <> 0,
         'at', now() - m * interval '1 minute' - (i % 60) * interval '1 second')))
       AS recorded
FROM generate_series(1, 360) m, generate_series(1, 20) i;
SELECT rollup_metrics() > 0 AS rolled_up;
-- A few requests after the rollup: the current bucket, not rolled up yet.
SELECT count(record_request('/api/scans', 45, 200, true)) AS recorded_after_rollup FROM generate_series(1, 25);

\echo '== performance_analytics_live: the rollups plus the current bucket from raw rows (rolled_up f)'
SELECT bucket, requests, round(err_rate::numeric, 4) AS err_rate, round(p95_ms::numeric) AS p95_ms,
       round(cache_hit_rate_percent::numeric, 1) AS cache_hit_pct, rolled_up
FROM performance_analytics_live WHERE endpoint IS NULL ORDER BY bucket DESC LIMIT 3;

\echo '== prometheus_alert_rules(): one alert per SLO rule and rollback trigger (first lines)'
SELECT line FROM regexp_split_to_table(prometheus_alert_rules(), E'\n') WITH ORDINALITY AS l(line, n)
WHERE n BETWEEN 3 AND 15 ORDER BY n;

\echo '== notify_alert_changes(): NOTIFY pg_runbook_alerts once per level change (the worker calls it too)'
SELECT notify_alert_changes() AS notifications_sent;
SELECT kind, name, level, changed_at FROM alert_state ORDER BY kind, name;
