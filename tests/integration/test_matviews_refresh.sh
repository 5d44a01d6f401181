#!/usr/bin/env bash
# refresh_materialized_views_staggered() against a live server: per-view NOTICEs, commits that
# survive the caller's failure, readers not blocked beyond lock_timeout, refresh_status() during a
# run, a cancelled caller, only_if_changed, pg_cron, and an extension in its own schema.
. "$(dirname "$0")/lib.sh"

DB=$(fresh_db mv_refresh)
q "$DB" "
CREATE SCHEMA analytics;
CREATE TABLE analytics.scans (id int PRIMARY KEY, site int NOT NULL);
INSERT INTO analytics.scans SELECT g, g % 4 FROM generate_series(1, 2000) g;
CREATE MATERIALIZED VIEW analytics.z_daily AS SELECT site, count(*) AS n FROM analytics.scans GROUP BY site;
CREATE UNIQUE INDEX ON analytics.z_daily (site);
CREATE MATERIALIZED VIEW analytics.a_on_daily AS SELECT site, 10000 / (n - 600) AS r FROM analytics.z_daily;
CREATE MATERIALIZED VIEW analytics.plain_only AS SELECT site, id FROM analytics.scans;" >/dev/null

echo "NOTICEs, one per view, in dependency order"
out=$(psql -X -q -d "$DB" -c "SELECT count(*) FROM refresh_materialized_views_staggered(schema_pattern => 'analytics')" 2>&1)
check_match "the view on a view is refreshed second, concurrently where possible" "$out" \
  "NOTICE:  \[1/3\] analytics.plain_only: plain, [0-9]+ ms.*NOTICE:  \[2/3\] analytics.z_daily: concurrently, [0-9]+ ms.*NOTICE:  \[3/3\] analytics.a_on_daily: plain, [0-9]+ ms"

export PGOPTIONS="-c client_min_messages=warning"

echo "statement_timeout"
q "$DB" "CREATE SCHEMA slow; CREATE MATERIALIZED VIEW slow.sleepy AS SELECT pg_sleep(2)::text AS s WITH NO DATA" >/dev/null
check "a refresh over statement_timeout is cancelled and logged" \
  "$(q "$DB" "SELECT status || ': ' || error FROM refresh_materialized_views_staggered(schema_pattern => 'slow', statement_timeout => '200ms')")" \
  "failed: canceling statement due to statement timeout"

echo "each refresh commits on its own"
# The caller's transaction rolls back after the call; the refreshes and their log rows stay.
q "$DB" "INSERT INTO analytics.scans VALUES (90001, 0)" >/dev/null
psql -X -q -d "$DB" -c "BEGIN" -c "SELECT count(*) FROM refresh_materialized_views_staggered(schema_pattern => 'analytics')" \
  -c "ROLLBACK" >/dev/null 2>&1
check "a rolled-back caller keeps the refreshed data" \
  "$(q "$DB" "SELECT n FROM analytics.z_daily WHERE site = 0")" "501"
check "and its log rows" "$(q "$DB" "SELECT count(*) FROM mv_refresh_log WHERE run_id = (SELECT max(run_id) FROM mv_refresh_log)")" "3"

echo "a failing view is logged, its dependants skipped, the others refreshed"
q "$DB" "INSERT INTO analytics.scans SELECT g, 0 FROM generate_series(5001, 5099) g" >/dev/null
check "statuses of the run" "$(q "$DB" "SELECT string_agg(matview || '=' || status, ' ') FROM refresh_materialized_views_staggered(schema_pattern => 'analytics')")" \
  "analytics.plain_only=success analytics.z_daily=success analytics.a_on_daily=failed"
q "$DB" "DELETE FROM analytics.scans WHERE id > 5000" >/dev/null

echo "a reader is not blocked beyond the lock timeout"
# A long reader holds ACCESS SHARE on plain_only; its plain refresh needs ACCESS EXCLUSIVE and
# gives up after lock_timeout instead of queueing (which would block every later reader).
bg "$DB" "BEGIN; SELECT count(*) FROM analytics.plain_only; SELECT pg_sleep(6); COMMIT;"
holder=$!
wait_for "$DB" "SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(6)%' AND pid <> pg_backend_pid()"
bg "$DB" "SELECT * FROM refresh_materialized_views_staggered(schema_pattern => 'analytics', name_pattern => 'plain%', lock_timeout => '300ms')"
refresher=$!
q "$DB" "CREATE TABLE reader_done (at timestamptz)" >/dev/null
wait_for "$DB" "SELECT count(*) > 0 FROM pg_locks WHERE NOT granted AND relation = 'analytics.plain_only'::regclass" 5 || true
q "$DB" "SET statement_timeout = '5s'; SELECT count(*) FROM analytics.plain_only; INSERT INTO reader_done VALUES (now())" >/dev/null
check "a second reader got through while the first still held its lock" \
  "$(q "$DB" "SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(6)%' AND pid <> pg_backend_pid()")" "t"
wait "$refresher" || true
check_match "the blocked refresh was logged failed with the lock timeout" \
  "$(q "$DB" "SELECT status || ': ' || error FROM mv_refresh_log WHERE matview = 'plain_only' ORDER BY id DESC LIMIT 1")" \
  "^failed: canceling statement due to lock timeout"
wait "$holder" || true

echo "refresh_status() during a run, and a cancelled caller"
bg "$DB" "SELECT * FROM refresh_materialized_views_staggered(schema_pattern => 'analytics', stagger => '3s')"
wait_for "$DB" "SELECT count(*) = 1 AND min(done) >= 1 FROM refresh_status()" 10
check_match "refresh_status shows the run in flight" "$(q "$DB" "SELECT views || ' views, ' || done || ' done' FROM refresh_status()")" "^3 views, [12] done$"
run=$(q "$DB" "SELECT run_id FROM refresh_status()")
q "$DB" "SELECT pg_cancel_backend(caller_pid) FROM refresh_status()" >/dev/null
wait_for "$DB" "SELECT count(*) = 0 FROM refresh_status()" 10
check "a cancel stops the run but keeps what was done" \
  "$(q "$DB" "SELECT count(*) BETWEEN 1 AND 2 FROM mv_refresh_log WHERE run_id = $run AND status = 'success'")" "t"
check "the worker is gone" "$(q "$DB" "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_runbook matview refresh'")" "0"

echo "only_if_changed"
q "$DB" "SELECT count(*) FROM refresh_materialized_views_staggered(schema_pattern => 'analytics', only_if_changed => true)" >/dev/null
check "a second run with no writes refreshes nothing" \
  "$(q "$DB" "SELECT string_agg(status, ' ') FROM refresh_materialized_views_staggered(schema_pattern => 'analytics', only_if_changed => true)")" \
  "unchanged unchanged unchanged"
q "$DB" "UPDATE analytics.scans SET site = 1 WHERE id = 4" >/dev/null
check "a write refreshes the views reading that table" \
  "$(q "$DB" "SELECT string_agg(status, ' ') FROM refresh_materialized_views_staggered(schema_pattern => 'analytics', only_if_changed => true)")" \
  "success success success"

echo "pg_cron"
q postgres "CREATE EXTENSION IF NOT EXISTS pg_cron" >/dev/null
before=$(q "$DB" "SELECT count(*) FROM mv_refresh_log")
job=$(q postgres "SELECT cron.schedule_in_database('mv_refresh_test', '* * * * *', \$\$SELECT count(*) FROM refresh_materialized_views_staggered(schema_pattern => 'analytics')\$\$, '$DB')")
wait_for "$DB" "SELECT count(*) >= $before + 3 FROM mv_refresh_log" 75 || true
q postgres "SELECT cron.unschedule($job)" >/dev/null
check "a scheduled run leaves log rows" "$(q "$DB" "SELECT count(*) >= $before + 3 FROM mv_refresh_log")" "t"

echo "a NOLOGIN owner role after SET ROLE"
q "$DB" "CREATE ROLE mv_owner NOLOGIN IN ROLE runbook_operator; CREATE SCHEMA owned AUTHORIZATION mv_owner;
         SET ROLE mv_owner; CREATE MATERIALIZED VIEW owned.v AS SELECT 1 AS x;" >/dev/null
check "refreshes as the current role, with no privileges on the log" \
  "$(q "$DB" "SET ROLE mv_owner; SELECT status FROM refresh_materialized_views_staggered(schema_pattern => 'owned')")" "success"

q "$DB" "GRANT USAGE ON SCHEMA slow TO mv_owner" >/dev/null
check "and cannot refresh a view it does not own" \
  "$(q "$DB" "SET ROLE mv_owner; SELECT status || ': ' || error FROM refresh_materialized_views_staggered(schema_pattern => 'slow')")" \
  "failed: must be owner of materialized view sleepy"

echo "the extension in its own schema"
DB2=$(psql -X -q -d postgres -c "DROP DATABASE IF EXISTS mv_schema WITH (FORCE)" -c "CREATE DATABASE mv_schema" >/dev/null; echo mv_schema)
q "$DB2" "CREATE SCHEMA runbook; CREATE EXTENSION pg_runbook SCHEMA runbook;
          CREATE TABLE t AS SELECT 1 AS x; CREATE MATERIALIZED VIEW v AS SELECT * FROM t;" >/dev/null
check "works with the extension's schema off the search_path" \
  "$(q "$DB2" "SELECT status FROM runbook.refresh_materialized_views_staggered()") $(q "$DB2" "SELECT count(*) FROM runbook.mv_refresh_log")" "success 1"

finish
