-- Materialized views: index verification, dependency-ordered refresh, the refresh log, bad input.
-- The refreshes run in a background worker that commits each view, so this file cannot run in a
-- rolled-back transaction: it works in its own schema and drops it at the end. Durations vary,
-- so the per-view NOTICEs are silenced here (tests/integration/test_matviews_refresh.sh pins them).

CREATE SCHEMA mvtest;
CREATE TABLE mvtest.scans (id int PRIMARY KEY, site int NOT NULL, divisor int NOT NULL);
INSERT INTO mvtest.scans SELECT g, g % 5, 1 + g % 3 FROM generate_series(1, 500) g;
-- A view with a unique index, one on top of it without, one on that, and one with only a partial
-- unique index. Names are chosen so that alphabetical order is not dependency order.
CREATE MATERIALIZED VIEW mvtest.z_daily AS
  SELECT site, count(*) AS scans, sum(100 / divisor) AS score FROM mvtest.scans GROUP BY site;
CREATE UNIQUE INDEX z_daily_site ON mvtest.z_daily (site);
CREATE MATERIALIZED VIEW mvtest.m_ratio AS SELECT site, 1000 / (scans - 150) AS ratio FROM mvtest.z_daily;
CREATE MATERIALIZED VIEW mvtest.a_top AS SELECT * FROM mvtest.m_ratio ORDER BY ratio DESC LIMIT 3;
CREATE MATERIALIZED VIEW mvtest.b_partial AS SELECT id, site FROM mvtest.scans;
CREATE UNIQUE INDEX b_partial_id ON mvtest.b_partial (id) WHERE site > 0;
CREATE MATERIALIZED VIEW mvtest.c_empty AS SELECT id FROM mvtest.scans WITH NO DATA;
CREATE UNIQUE INDEX c_empty_id ON mvtest.c_empty (id);

SELECT * FROM verify_materialized_view_indexes(schema_pattern => 'mvtest');

SET client_min_messages = warning;
-- Dependency order: z_daily, then m_ratio, then a_top; concurrently only where the view allows it.
SELECT matview, mode, status, error FROM refresh_materialized_views_staggered(schema_pattern => 'mvtest');
SELECT matview, mode, status, rows_after, error FROM mv_refresh_log
WHERE schemaname = 'mvtest' ORDER BY id;

-- 50 new scans bring site 0 to 150, and m_ratio divides by zero: it fails, a_top (built on it)
-- is skipped, the others succeed.
INSERT INTO mvtest.scans SELECT g, 0, 1 FROM generate_series(1001, 1050) g;
SELECT site, count(*) FROM mvtest.scans GROUP BY site ORDER BY site;
SELECT matview, mode, status, error FROM refresh_materialized_views_staggered(schema_pattern => 'mvtest');

-- refresh_analytics_views_concurrent(): the same views, rows in the same order, refreshed on up
-- to two workers; which worker took which view varies, so it is left out here. The last row is the
-- run's verdict against the budget; its durations, and so which chain was slowest, vary and are
-- masked (tests/integration/test_matviews_parallel.sh pins the chain with views of known cost).
SELECT matview, mode, status, rows_after, detail
FROM refresh_analytics_views_concurrent(schema_pattern => 'mvtest', max_parallel => 2)
WHERE matview IS NOT NULL;
SELECT status, regexp_replace(regexp_replace(detail, '[0-9.]+ (ms|s|min|h)\M', '<duration>', 'g'),
                              'slowest chain .*', 'slowest chain <chain>') AS detail
FROM refresh_analytics_views_concurrent(schema_pattern => 'mvtest', max_parallel => 2, budget => '0')
WHERE matview IS NULL;
SELECT parallelism, total_ms > 0 AS timed, finished_at IS NOT NULL AS finished, refreshed_by
FROM mv_refresh_runs ORDER BY run_id DESC LIMIT 1;

-- refresh_materialized_views(): every view, plainly, same log.
SELECT matview, mode, status, error FROM refresh_materialized_views() WHERE matview LIKE 'mvtest.%';
SELECT status, count(*) FROM mv_refresh_log WHERE schemaname = 'mvtest' GROUP BY status ORDER BY status;

-- Filters: a name pattern; nothing matching is an empty result.
SELECT matview FROM refresh_materialized_views_staggered(schema_pattern => 'mvtest', name_pattern => 'c\_%');
SELECT count(*) FROM refresh_materialized_views_staggered(schema_pattern => 'mvtest', name_pattern => 'nothing%');
RESET client_min_messages;

-- Bad input: 22023 naming the argument, and nothing refreshed.
SELECT count(*) AS log_rows_before FROM mv_refresh_log \gset
SELECT regress.error_of($$SELECT * FROM refresh_materialized_views_staggered(schema_pattern => 'no_such_schema')$$);
SELECT regress.error_of($$SELECT * FROM refresh_materialized_views_staggered(stagger => '-1 second')$$);
SELECT regress.error_of($$SELECT * FROM refresh_materialized_views_staggered(lock_timeout => '-5s')$$);
SELECT regress.error_of($$SELECT * FROM refresh_materialized_views_staggered(stagger => '2 days')$$);
SELECT regress.error_of($$SELECT * FROM refresh_materialized_views_staggered(schema_pattern => NULL)$$);
SELECT regress.error_of($$SELECT * FROM refresh_materialized_views_staggered(concurrently => NULL)$$);
SELECT regress.error_of($$SELECT * FROM refresh_materialized_views_staggered(only_if_changed => NULL)$$);
SELECT regress.error_of($$SELECT * FROM refresh_materialized_views_staggered(statement_timeout => NULL)$$);
SELECT regress.error_of($$SELECT * FROM verify_materialized_view_indexes(schema_pattern => 'no_such_schema')$$);
SELECT regress.error_of($$SELECT * FROM refresh_analytics_views_concurrent(max_parallel => 0)$$);
SELECT regress.error_of($$SELECT * FROM refresh_analytics_views_concurrent(budget => '-1s')$$);
SELECT regress.error_of($$SELECT * FROM refresh_analytics_views_concurrent(budget => NULL)$$);
SELECT regress.error_of($$SELECT * FROM refresh_analytics_views_concurrent(schema_pattern => 'no_such_schema')$$);
SELECT regress.error_of($$SELECT * FROM refresh_analytics_views_concurrent(lock_timeout => NULL)$$);
SELECT count(*) = :log_rows_before AS nothing_refreshed FROM mv_refresh_log;

-- Nothing is in flight; the log keeps recent rows.
SELECT count(*) FROM refresh_status();
INSERT INTO mv_refresh_log (run_id, schemaname, matview, mode, status, started_at, finished_at, duration_ms)
VALUES (0, 'mvtest', 'old', 'plain', 'success', now() - interval '40 days', now() - interval '40 days', 1);
SET pg_runbook.refresh_log_retention = '50d';
SELECT prune_mv_refresh_log();
RESET pg_runbook.refresh_log_retention;
SELECT prune_mv_refresh_log();
SELECT prune_mv_refresh_log();
-- 0 keeps every row, however old.
INSERT INTO mv_refresh_log (run_id, schemaname, matview, mode, status, started_at, finished_at, duration_ms)
VALUES (0, 'mvtest', 'old_kept', 'plain', 'success', now() - interval '40 days', now() - interval '40 days', 1);
SET pg_runbook.refresh_log_retention = 0;
SELECT prune_mv_refresh_log();
SELECT count(*) AS old_row_kept FROM mv_refresh_log WHERE matview = 'old_kept';
DELETE FROM mv_refresh_log WHERE matview = 'old_kept';
RESET pg_runbook.refresh_log_retention;
SHOW pg_runbook.refresh_log_retention;
SHOW pg_runbook.refresh_max_parallel;
-- Server-level settings: a session cannot raise the cap (retention is checked with a plain role
-- in tests/integration/test_matviews_attacker.sh; this session is a superuser's).
SELECT regress.error_of($$SET pg_runbook.refresh_max_parallel = 8$$);
-- Nothing at all to refresh: only the verdict row.
SELECT matview, status, detail FROM refresh_analytics_views_concurrent(schema_pattern => 'mvtest', name_pattern => 'nothing%');

DROP SCHEMA mvtest CASCADE;
DELETE FROM mv_refresh_log WHERE schemaname = 'mvtest';
