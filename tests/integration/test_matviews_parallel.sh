#!/usr/bin/env bash
# refresh_analytics_views_concurrent() against a live server: views refreshed at the same time on
# several workers, dependency order kept under parallelism, long views first once their times
# are logged, a failure skipping its dependants only, the budget verdict naming the slowest chain,
# the run's log, the parallelism cap, a locked view reported rather than waited on, and a
# cancelled caller stopping every worker.
. "$(dirname "$0")/lib.sh"

DB=$(fresh_db mv_parallel)
# Each view sleeps while it is refreshed, so refreshes that run at the same time overlap for
# certain. Names are chosen so that alphabetical order is not dependency order: the chain is
# c_top <- b_mid <- z_base; f_base divides by `divisor` and fails when it is 0, e_on_f reads it,
# d_on_e reads e_on_f.
q "$DB" "
CREATE SCHEMA par;
CREATE TABLE par.events AS SELECT g AS id, g % 5 AS k FROM generate_series(1, 1000) g;
CREATE TABLE par.knob (divisor int);
INSERT INTO par.knob VALUES (1);
CREATE MATERIALIZED VIEW par.z_base AS
  SELECT k, count(*) AS n FROM par.events CROSS JOIN (SELECT pg_sleep(0.3)) s GROUP BY k;
CREATE UNIQUE INDEX ON par.z_base (k);
CREATE MATERIALIZED VIEW par.b_mid AS SELECT k, n * 2 AS n FROM par.z_base CROSS JOIN (SELECT pg_sleep(0.3)) s;
CREATE MATERIALIZED VIEW par.c_top AS SELECT k, n + 1 AS n FROM par.b_mid CROSS JOIN (SELECT pg_sleep(0.3)) s;
CREATE MATERIALIZED VIEW par.f_base AS
  SELECT k, count(*) / (SELECT divisor FROM par.knob) AS n FROM par.events GROUP BY k;
CREATE MATERIALIZED VIEW par.e_on_f AS SELECT * FROM par.f_base;
CREATE MATERIALIZED VIEW par.d_on_e AS SELECT * FROM par.e_on_f;
CREATE MATERIALIZED VIEW par.i1 AS SELECT 1 AS x FROM (SELECT pg_sleep(0.3)) s;
CREATE MATERIALIZED VIEW par.i2 AS SELECT 2 AS x FROM (SELECT pg_sleep(0.3)) s;
CREATE MATERIALIZED VIEW par.i3 AS SELECT 3 AS x FROM (SELECT pg_sleep(0.3)) s;" >/dev/null
export PGOPTIONS="-c client_min_messages=warning"

echo "parallel refresh on two workers"
out=$(q "$DB" "SELECT coalesce(matview, '(run)') || '=' || status FROM refresh_analytics_views_concurrent(schema_pattern => 'par', max_parallel => 2)")
check "every view succeeds, in dependency order, and the run passes its budget" "$(echo "$out" | tr '\n' ' ')" \
  "par.f_base=success par.e_on_f=success par.d_on_e=success par.i1=success par.i2=success par.i3=success par.z_base=success par.b_mid=success par.c_top=success (run)=PASS "
run=$(q "$DB" "SELECT max(run_id) FROM mv_refresh_log")
check "both workers took views" "$(q "$DB" "SELECT count(DISTINCT worker) FROM mv_refresh_log WHERE run_id = $run")" "2"
check "refreshes overlapped in time" \
  "$(q "$DB" "SELECT count(*) > 0 FROM mv_refresh_log a JOIN mv_refresh_log b ON a.run_id = b.run_id AND a.id < b.id
              AND a.started_at < b.finished_at AND b.started_at < a.finished_at WHERE a.run_id = $run")" "t"
check "under parallelism, each view of the chain started after the one it reads had finished" \
  "$(q "$DB" "SELECT bool_and(child.started_at >= parent.finished_at) AND count(*) = 4
              FROM (VALUES ('b_mid', 'z_base'), ('c_top', 'b_mid'), ('e_on_f', 'f_base'), ('d_on_e', 'e_on_f')) AS d(child_name, parent_name)
              JOIN mv_refresh_log child ON child.run_id = $run AND child.matview = d.child_name
              JOIN mv_refresh_log parent ON parent.run_id = $run AND parent.matview = d.parent_name")" "t"
check "the run is logged with its parallelism and total" \
  "$(q "$DB" "SELECT parallelism || ' ' || (total_ms > 0) || ' ' || (finished_at IS NOT NULL) FROM mv_refresh_runs WHERE run_id = $run")" "2 true true"

echo "long views first, once their refresh times are logged"
# Four short views and a long one, all independent; the long one comes last by name. With no time
# logged for any of them, the workers take them in refresh order, so the long one starts after
# short ones have finished. The next run knows their times and starts the long one at once.
q "$DB" "CREATE SCHEMA lpt;
  CREATE MATERIALIZED VIEW lpt.a1 AS SELECT 1 AS x FROM (SELECT pg_sleep(0.1)) s;
  CREATE MATERIALIZED VIEW lpt.a2 AS SELECT 2 AS x FROM (SELECT pg_sleep(0.1)) s;
  CREATE MATERIALIZED VIEW lpt.a3 AS SELECT 3 AS x FROM (SELECT pg_sleep(0.1)) s;
  CREATE MATERIALIZED VIEW lpt.a4 AS SELECT 4 AS x FROM (SELECT pg_sleep(0.1)) s;
  CREATE MATERIALIZED VIEW lpt.z_long AS SELECT 5 AS x FROM (SELECT pg_sleep(0.6)) s;" >/dev/null
# whether the long view started before any other view of the latest run had finished
long_first() {
  q "$DB" "SELECT l.started_at < (SELECT min(o.finished_at) FROM mv_refresh_log o
                                  WHERE o.run_id = l.run_id AND o.matview <> 'z_long')
           FROM mv_refresh_log l WHERE l.matview = 'z_long' AND l.schemaname = 'lpt'
           ORDER BY l.run_id DESC LIMIT 1"
}
q "$DB" "SELECT count(*) FROM refresh_analytics_views_concurrent(schema_pattern => 'lpt', max_parallel => 2)" >/dev/null
check "with no time logged, the long view waits its turn in refresh order" "$(long_first)" "f"
q "$DB" "SELECT count(*) FROM refresh_analytics_views_concurrent(schema_pattern => 'lpt', max_parallel => 2)" >/dev/null
check "once its time is logged, the long view starts first" "$(long_first)" "t"
check "and the short ones share the other worker" \
  "$(q "$DB" "SELECT count(DISTINCT worker) FROM mv_refresh_log
              WHERE run_id = (SELECT max(run_id) FROM mv_refresh_log) AND matview <> 'z_long'")" "1"
q "$DB" "DROP SCHEMA lpt CASCADE" >/dev/null

echo "a failing view skips its dependants only"
q "$DB" "UPDATE par.knob SET divisor = 0" >/dev/null
out=$(q "$DB" "SELECT matview || '=' || status || coalesce(': ' || detail, '') FROM refresh_analytics_views_concurrent(schema_pattern => 'par', max_parallel => 3) WHERE matview IS NOT NULL")
check "f_base fails, e_on_f and d_on_e are skipped with the reason, the rest succeed" "$out" \
  "par.f_base=failed: division by zero
par.e_on_f=skipped: depends on par.f_base, which failed
par.d_on_e=skipped: depends on par.e_on_f, which was skipped
par.i1=success
par.i2=success
par.i3=success
par.z_base=success
par.b_mid=success
par.c_top=success"
q "$DB" "UPDATE par.knob SET divisor = 1" >/dev/null

echo "the budget verdict"
check_match "over the budget: FAIL naming the slowest chain" \
  "$(q "$DB" "SELECT status || ': ' || detail FROM refresh_analytics_views_concurrent(schema_pattern => 'par', max_parallel => 2, budget => '10ms') WHERE matview IS NULL")" \
  "^FAIL: 9 views on 2 workers in .*, over the budget of 10 ms; slowest chain par.z_base -> par.b_mid -> par.c_top \(.*\)$"
check_match "within it: PASS, naming it too" \
  "$(q "$DB" "SELECT status || ': ' || detail FROM refresh_analytics_views_concurrent(schema_pattern => 'par', budget => '1 hour') WHERE matview IS NULL")" \
  "^PASS: 9 views on [0-9]+ workers in .*, within the budget of 1.0 h; slowest chain par.z_base -> par.b_mid -> par.c_top"

echo "the parallelism cap"
check_match "a role cannot raise the cap in its session" \
  "$(q "$DB" "SET pg_runbook.refresh_max_parallel = 8" 2>&1)" "cannot be changed now"
q postgres "ALTER SYSTEM SET pg_runbook.refresh_max_parallel = 1" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
check_match "max_parallel above the cap gets the cap" \
  "$(q "$DB" "SELECT detail FROM refresh_analytics_views_concurrent(schema_pattern => 'par', max_parallel => 4) WHERE matview IS NULL")" \
  "^9 views on 1 worker in "
check "one worker took every view" \
  "$(q "$DB" "SELECT count(DISTINCT worker) FROM mv_refresh_log WHERE run_id = (SELECT max(run_id) FROM mv_refresh_log)")" "1"
q postgres "ALTER SYSTEM RESET pg_runbook.refresh_max_parallel" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.5

echo "parallel query: kept by one worker, left out by several"
# Each view records the setting it was refreshed under.
q "$DB" "CREATE SCHEMA pq;
  CREATE MATERIALIZED VIEW pq.a AS SELECT current_setting('max_parallel_workers_per_gather') AS per_gather;
  CREATE MATERIALIZED VIEW pq.b AS SELECT current_setting('max_parallel_workers_per_gather') AS per_gather;" >/dev/null
q "$DB" "SELECT count(*) FROM refresh_materialized_views_staggered(schema_pattern => 'pq')" >/dev/null
check "the staggered refresh refreshes under the server's setting" \
  "$(q "$DB" "SELECT string_agg(per_gather, ' ') FROM (SELECT per_gather FROM pq.a UNION ALL SELECT per_gather FROM pq.b) s")" \
  "$(q "$DB" "SHOW max_parallel_workers_per_gather") $(q "$DB" "SHOW max_parallel_workers_per_gather")"
q "$DB" "SELECT count(*) FROM refresh_analytics_views_concurrent(schema_pattern => 'pq', max_parallel => 2)" >/dev/null
check "a run on two workers refreshes without parallel query" \
  "$(q "$DB" "SELECT parallelism FROM mv_refresh_runs WHERE run_id = (SELECT max(run_id) FROM mv_refresh_runs)") $(q "$DB" "SELECT string_agg(per_gather, ' ') FROM (SELECT per_gather FROM pq.a UNION ALL SELECT per_gather FROM pq.b) s")" \
  "2 0 0"
q "$DB" "DROP SCHEMA pq CASCADE" >/dev/null

echo "a locked view is reported, not waited on"
bg "$DB" "BEGIN; SELECT count(*) FROM par.i2; SELECT pg_sleep(4); COMMIT;"
holder=$!
wait_for "$DB" "SELECT count(*) = 1 FROM pg_locks WHERE relation = 'par.i2'::regclass AND granted"
check "i2 fails with the lock timeout, the others succeed" \
  "$(q "$DB" "SELECT string_agg(matview || '=' || status || coalesce(': ' || detail, ''), ' ')
              FROM refresh_analytics_views_concurrent(schema_pattern => 'par', name_pattern => 'i%', lock_timeout => '200ms', concurrently => false)
              WHERE matview IS NOT NULL")" \
  "par.i1=success par.i2=failed: canceling statement due to lock timeout par.i3=success"
wait "$holder" || true

echo "a cancelled caller stops every worker"
q "$DB" "CREATE SCHEMA slow;
  CREATE MATERIALIZED VIEW slow.s1 AS SELECT 1 AS x FROM (SELECT pg_sleep(20)) s WITH NO DATA;
  CREATE MATERIALIZED VIEW slow.s2 AS SELECT 2 AS x FROM (SELECT pg_sleep(20)) s WITH NO DATA;
  CREATE MATERIALIZED VIEW slow.s3 AS SELECT 3 AS x FROM (SELECT pg_sleep(20)) s WITH NO DATA;" >/dev/null
bg "$DB" "SELECT * FROM refresh_analytics_views_concurrent(schema_pattern => 'slow', max_parallel => 3)"
wait_for "$DB" "SELECT count(*) = 3 FROM refresh_status() WHERE current_matview LIKE 'slow.%'" 15
check "refresh_status() shows one row per busy worker of the run" \
  "$(q "$DB" "SELECT count(DISTINCT worker_pid) || ' workers, ' || count(DISTINCT run_id) || ' run' FROM refresh_status()")" "3 workers, 1 run"
q "$DB" "SELECT pg_cancel_backend(caller_pid) FROM refresh_status() LIMIT 1" >/dev/null
wait_for "$DB" "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_runbook matview refresh'" 10
check "every worker is gone within seconds of the cancel (each view sleeps 20 s)" \
  "$(q "$DB" "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_runbook matview refresh'")" "0"
check "their refreshes were rolled back" \
  "$(q "$DB" "SELECT count(*) FROM pg_matviews WHERE schemaname = 'slow' AND ispopulated")" "0"

echo "the caller's statement_timeout stops every worker too"
bg "$DB" "SET statement_timeout = '1500ms'; SELECT * FROM refresh_analytics_views_concurrent(schema_pattern => 'slow', max_parallel => 3)"
caller=$!
wait_for "$DB" "SELECT count(*) = 3 FROM pg_stat_activity WHERE backend_type = 'pg_runbook matview refresh'" 10
wait "$caller" || true
wait_for "$DB" "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_runbook matview refresh'" 10
check "no worker is left after the caller's statement_timeout" \
  "$(q "$DB" "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_runbook matview refresh'")" "0"

finish
