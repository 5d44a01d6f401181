#!/usr/bin/env bash
# Two benchmarks over the same 20 materialized views of a 200k-row table, three of which form a
# dependency chain (v18 <- v19 <- v20), measured interleaved in one run:
# - staggered refresh: refresh_materialized_views_staggered(), stagger 0, against a script of bare
#   REFRESH MATERIALIZED VIEW CONCURRENTLY statements for the same views (its overhead);
# - parallel refresh: refresh_analytics_views_concurrent() on 2 workers against the staggered
#   (sequential) refresh of the same views (the issue's target: at most 0.6x its total), and
#   against the same bare statements run by two sessions at once (what 2-way parallelism reaches
#   on this machine at that moment; the function should stay within 10% of it).
. "$(dirname "$0")/lib.sh"
# More runs than the usual 5: a 2-core VM's throughput drifts by tens of percent from minute to
# minute, and these ratios are close to their targets; the median of more interleaved runs holds.
RUNS=$(size 9 1)
B="staggered refresh (20 views)"
P="parallel refresh (20 views, a chain of 3)"
ROWS=$(size 200000 2000)
q bench "DROP SCHEMA IF EXISTS bench_mv CASCADE; CREATE SCHEMA bench_mv;
  CREATE TABLE bench_mv.events AS
    SELECT g AS id, g % 1000 AS account, (g % 97)::float8 AS amount, now() - g * interval '1 second' AS at
    FROM generate_series(1, $ROWS) g;
  DO \$\$ BEGIN FOR v IN 1..18 LOOP
    EXECUTE format('CREATE MATERIALIZED VIEW bench_mv.v%s AS SELECT account, count(*) AS n, sum(amount * %s) AS total
                    FROM bench_mv.events WHERE id %% 20 <> %s GROUP BY account', v, v, v - 1);
    EXECUTE format('CREATE UNIQUE INDEX ON bench_mv.v%s (account)', v);
  END LOOP;
  -- The chain: each reads the events and the view before it, so it costs as much as the others
  -- and can only start when that view is refreshed.
  FOR v IN 19..20 LOOP
    EXECUTE format('CREATE MATERIALIZED VIEW bench_mv.v%s AS SELECT e.account, count(*) AS n, sum(e.amount) + max(p.total) AS total
                    FROM bench_mv.events e JOIN bench_mv.v%s p USING (account) WHERE e.id %% 20 <> %s GROUP BY e.account', v, v - 1, v - 1);
    EXECUTE format('CREATE UNIQUE INDEX ON bench_mv.v%s (account)', v);
  END LOOP; END \$\$;
  ANALYZE bench_mv.events" >/dev/null
dir=$RUN_DIR/bench-refresh; mkdir -p "$dir"
for v in $(seq 20); do echo "REFRESH MATERIALIZED VIEW CONCURRENTLY bench_mv.v$v;"; done > "$dir/plain.sql"
echo "SELECT * FROM refresh_materialized_views_staggered(schema_pattern => 'bench_mv', stagger => '0');" > "$dir/runbook.sql"
echo "SELECT * FROM refresh_analytics_views_concurrent(schema_pattern => 'bench_mv', max_parallel => 2);" > "$dir/parallel.sql"
# What two sessions of bare statements reach on this machine now: the views split 10/10, the chain
# in order in one session. Other load on the machine limits both sides alike. Like the parallel
# refresh's workers, they refresh without parallel query (max_parallel_workers_per_gather = 0):
# two sessions already take both cores.
for v in 1 2 3 4 5 6 7 18 19 20; do echo "REFRESH MATERIALIZED VIEW CONCURRENTLY bench_mv.v$v;"; done > "$dir/half_a.sql"
for v in $(seq 8 17); do echo "REFRESH MATERIALIZED VIEW CONCURRENTLY bench_mv.v$v;"; done > "$dir/half_b.sql"
two_sessions_ms() {
  local start end
  start=$(date +%s%N)
  PGOPTIONS='-c max_parallel_workers_per_gather=0' psql -X -q -d bench -v ON_ERROR_STOP=1 -f "$dir/half_a.sql" >/dev/null &
  local a=$!
  PGOPTIONS='-c max_parallel_workers_per_gather=0' psql -X -q -d bench -v ON_ERROR_STOP=1 -f "$dir/half_b.sql" >/dev/null
  wait "$a"
  end=$(date +%s%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", (e - s) / 1000000 }'
}
first_run=$(q bench "SELECT coalesce(max(run_id), 0) FROM mv_refresh_runs")
for _ in $(seq "$RUNS"); do
  staggered=$(time_file_ms bench "$dir/runbook.sql")
  measure "$B" "pg_runbook: refresh_materialized_views_staggered()" "$staggered" ms
  measure "$B" "baseline: 20 bare REFRESH ... CONCURRENTLY statements" "$(time_file_ms bench "$dir/plain.sql")" ms
  measure "$P" "pg_runbook: refresh_analytics_views_concurrent(max_parallel => 2)" "$(time_file_ms bench "$dir/parallel.sql")" ms
  measure "$P" "baseline: refresh_materialized_views_staggered() (sequential)" "$staggered" ms
  measure "$P" "limit: the 20 bare REFRESH statements split over 2 concurrent sessions, without parallel query as the workers" "$(two_sessions_ms)" ms
done
target "$B" "pg_runbook: refresh_materialized_views_staggered()" "baseline: 20 bare REFRESH ... CONCURRENTLY statements" ge 0.909 speedup
note "$B" "20 views over a $ROWS-row table, each with a unique index (so both sides refresh CONCURRENTLY). Overhead < 10% means a speedup of at least 0.909."
note "$B" "Where the time goes (the worker's own timing, 3 runs, 2026-11-23): the worker starts in about 4 ms and its setup (the run's row; the views, their sources and dependency edges, read once) takes 8-12 ms; per view, about 0.6 ms of bookkeeping through prepared plans (timeouts, source write counters, the log row) around a 47 ms REFRESH, and a 1 ms commit as each bare statement has. rows_after is the REFRESH's own row count, so no view is scanned twice."
target "$P" "pg_runbook: refresh_analytics_views_concurrent(max_parallel => 2)" "baseline: refresh_materialized_views_staggered() (sequential)" le 0.6 rate
target "$P" "limit: the 20 bare REFRESH statements split over 2 concurrent sessions, without parallel query as the workers" "baseline: refresh_materialized_views_staggered() (sequential)" le 0.6 rate
target "$P" "pg_runbook: refresh_analytics_views_concurrent(max_parallel => 2)" "limit: the 20 bare REFRESH statements split over 2 concurrent sessions, without parallel query as the workers" le 1.1 rate
# The chain's order in every parallel run: each view of it started after the one it reads had
# finished (from the log the workers wrote).
kept=$(q bench "SELECT coalesce(bool_and(c.started_at >= p.finished_at), false) || ' in ' || count(*) / 2 || ' runs'
  FROM mv_refresh_runs r
  JOIN (VALUES ('v19', 'v18'), ('v20', 'v19')) AS d(child, parent) ON true
  JOIN mv_refresh_log c ON c.run_id = r.run_id AND c.matview = d.child AND c.status = 'success'
  JOIN mv_refresh_log p ON p.run_id = r.run_id AND p.matview = d.parent AND p.status = 'success'
  WHERE r.run_id > $first_run AND r.parallelism > 1")
note "$P" "The same views and sizes as the staggered refresh above, measured in the same loop: both sides refresh every view CONCURRENTLY in its own transaction and log it; the parallel one on 2 workers (this machine has 2 cores, so 0.5x is the physical limit). The cluster keeps PostgreSQL's default parallel query, so each REFRESH of the sequential side scans the events with one parallel worker; the parallel run's workers refresh without it (2 workers already take both cores). Where the time goes (2026-12-02, per-process schedstat, the VM shared with other builds): alone, a session of 20 REFRESHes is on a CPU all but ~20 ms of its run; two sessions at once each wait 110-250 ms for a CPU per 340-460 ms on one, and sleep (fsync at commit, locks, I/O) under 40 ms; so what keeps this ratio above 0.5x is the cores' other load. WAL: 470 kB for 20 views, no full-page images unless right after a checkpoint (32, +150 kB). The chain v18 <- v19 <- v20 kept its order (each started after the one it reads had finished): $kept."
