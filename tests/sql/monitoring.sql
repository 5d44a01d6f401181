-- Monitoring: the Prometheus rules built from the SLO tables, the live view of the rollups with the
-- current bucket, and notify_alert_changes(). Each part in a transaction that is rolled back.
\set VERBOSITY terse
BEGIN;

-- ---- prometheus_alert_rules(): the rules of a fresh install (= monitoring/alert_rules.yml) -------
SELECT prometheus_alert_rules();

-- A rule added in SQL becomes an alert; quotes and a newline in its name reach the YAML as JSON
-- strings (valid YAML and PromQL), and the alert name keeps only [A-Za-z0-9_].
INSERT INTO slo_definitions (name, metric, comparison, threshold, level, consecutive_buckets, description)
VALUES (E'checkout "p95"\nit''s slow', 'p95_ms', '>', 300, 'PAGE', 1, 'checkout: P95 > 300 ms');
-- A disabled rollback trigger has no alert.
UPDATE rollback_triggers SET enabled = false WHERE name = 'cache_hit_rate';
SELECT line FROM regexp_split_to_table(prometheus_alert_rules(), E'\n') AS line
WHERE line ~ 'checkout|cache_hit_rate';

-- ---- performance_analytics_live: rollups before the last rollup's bucket, raw rows after -------
SELECT date_bin('5 minutes', now() - interval '1 day', '2000-01-01') AS t0 \gset
SELECT record_requests(jsonb_agg(jsonb_build_object('endpoint', '/regress/monitoring', 'duration_ms', g,
         'status_code', CASE WHEN g = 10 THEN 500 ELSE 200 END, 'cache_hit', g % 2 = 0, 'at', :'t0'::timestamptz)))
FROM generate_series(1, 10) g;
SELECT rollup_metrics() >= 10 AS folded;
SELECT count(record_request('/regress/monitoring', 5, 200, true)) AS recorded FROM generate_series(1, 3);
SELECT bucket = :'t0' AS is_t0, bucket = date_bin('5 minutes', now(), '2000-01-01') AS is_current,
       requests, errors, err_rate, max_ms, cache_hit_rate_percent, rolled_up
FROM performance_analytics_live WHERE endpoint = '/regress/monitoring' ORDER BY bucket;

ROLLBACK;

-- ---- notify_alert_changes() ----------------------------------------------------------------------
-- (A new transaction: rollup_metrics() does not fold rows a transaction inserted after an earlier
-- call of its own.)
BEGIN;
-- Only this file's traffic and no refresh failures in the window (other files' rows are
-- removed inside this transaction, which is rolled back).
DELETE FROM mv_refresh_log;
DELETE FROM performance_analytics_5min WHERE bucket >= now() - interval '1 hour';
-- Two complete buckets with 20% errors: error_rate_page, error_rate_critical and the rollback
-- trigger error_rate change; a second call finds nothing new.
SELECT record_requests(jsonb_agg(jsonb_build_object('endpoint', '/regress/notify', 'duration_ms', 20,
         'status_code', CASE WHEN g % 5 = 0 THEN 500 ELSE 200 END, 'cache_hit', true,
         'at', date_bin('5 minutes', now(), '2000-01-01') - b * interval '5 minutes' + interval '1 minute')))
FROM generate_series(1, 100) g, generate_series(1, 2) b;
SELECT rollup_metrics() > 0 AS folded;
SELECT notify_alert_changes() AS sent;
SELECT notify_alert_changes() AS sent_again;
SELECT kind, name, level FROM alert_state ORDER BY kind, name;
-- A deleted rule is forgotten without a notification.
DELETE FROM slo_definitions WHERE name = 'error_rate_page';
SELECT notify_alert_changes() AS sent_after_delete;
SELECT kind, name, level FROM alert_state ORDER BY kind, name;
-- Who may call what.
SET LOCAL ROLE runbook_reader;
SELECT length(prometheus_alert_rules()) > 0 AS reader_gets_rules;
SELECT count(*) >= 0 AS reader_reads_live FROM performance_analytics_live;
SAVEPOINT reader;
SELECT notify_alert_changes();
ROLLBACK TO reader;
ROLLBACK;
