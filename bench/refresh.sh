#!/usr/bin/env bash
# Two benchmarks over the same 20 materialized views of a 200k-row table, three of which form a
# dependency chain (v18 <- v19 <- v20), measured interleaved in one run:
# - staggered refresh: refresh_materialized_views_staggered(), stagger 0, against a script of bare
#   REFRESH MATERIALIZED VIEW CONCURRENTLY statements for the same views (its overhead);
# - parallel refresh: refresh_analytics_views_concurrent() on 2 workers against the staggered
#   (sequential) refresh of the same views (the issue's target: at most 0.6x its total), and
#   against the same bare statements run by two sessions at once (what 2-way parallelism reaches
#   on this machine at that moment; the function should stay within 10% of it), and against those
#   statements in one session without parallel query (a run on one core, against which 0.5x is
#   the physical limit; the sequential baseline uses parallel query, so against it the limit is
#   higher).
. "$(dirname "$0")/lib.sh"
# More runs than the usual 5: a 2-core VM's throughput drifts by tens of percent from minute to
# minute, and these ratios are close to their targets; the median of more interleaved runs holds.
RUNS=$(size 11 1)
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
# two sessions already take both cores. Both connect first and start together at a set time; the
# span is from the first statement's start to the last one's end, on the server's clock.
for half in a b; do
  { echo "SELECT pg_catalog.pg_sleep_until(:'at');"
    echo "SELECT 'start', extract(epoch FROM clock_timestamp());"
    if [ $half = a ]; then views="1 2 3 4 5 6 7 18 19 20"; else views=$(seq 8 17); fi
    for v in $views; do echo "REFRESH MATERIALIZED VIEW CONCURRENTLY bench_mv.v$v;"; done
    echo "SELECT 'end', extract(epoch FROM clock_timestamp());"
  } > "$dir/half_$half.sql"
done
NO_PARALLEL_QUERY='-c max_parallel_workers_per_gather=0'
two_sessions_ms() {
  local at; at=$(q bench "SELECT (clock_timestamp() + interval '500 ms')::text")
  local pids=() pid
  for half in a b; do
    PGOPTIONS=$NO_PARALLEL_QUERY psql -X -q -A -t -d bench -v ON_ERROR_STOP=1 -v at="$at" \
      -f "$dir/half_$half.sql" > "$dir/half_$half.out" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || return 1; done
  awk -F'|' '$1 == "start" && (s == "" || $2 < s) { s = $2 } $1 == "end" && $2 > e { e = $2 }
             END { printf "%.3f\n", (e - s) * 1000 }' "$dir"/half_[ab].out
}
first_run=$(q bench "SELECT coalesce(max(run_id), 0) FROM mv_refresh_runs")
# Every figure is the statements' own time on the server (psql's \timing; the two sessions: their
# span), without psql's start and connection: ~35 ms per psql here, no part of any refresh.
for _ in $(seq "$RUNS"); do
  staggered=$(time_statements_ms bench "$dir/runbook.sql")
  bare=$(time_statements_ms bench "$dir/plain.sql")
  parallel=$(time_statements_ms bench "$dir/parallel.sql")
  one_core=$(time_statements_ms bench "$dir/plain.sql" "$NO_PARALLEL_QUERY")
  two=$(two_sessions_ms)
  measure "$B" "pg_runbook: refresh_materialized_views_staggered()" "$staggered" ms
  measure "$B" "baseline: 20 bare REFRESH ... CONCURRENTLY statements" "$bare" ms
  measure "$P" "pg_runbook: refresh_analytics_views_concurrent(max_parallel => 2)" "$parallel" ms
  measure "$P" "baseline: refresh_materialized_views_staggered() (sequential)" "$staggered" ms
  measure "$P" "limit: the 20 bare REFRESH statements split over 2 concurrent sessions, without parallel query as the workers" "$two" ms
  measure "$P" "reference: the 20 bare REFRESH statements in one session without parallel query (one core)" "$one_core" ms
done
target "$B" "pg_runbook: refresh_materialized_views_staggered()" "baseline: 20 bare REFRESH ... CONCURRENTLY statements" ge 0.909 speedup
note "$B" "20 views over a $ROWS-row table, each with a unique index (so both sides refresh CONCURRENTLY). Overhead < 10% means a speedup of at least 0.909."
note "$B" "Where the time goes (the worker's own timing, 3 runs, 2026-11-23): the worker starts in about 4 ms and its setup (the run's row; the views, their sources and dependency edges, read once) takes 8-12 ms; per view, about 0.6 ms of bookkeeping through prepared plans (timeouts, source write counters, the log row) around a 47 ms REFRESH, and a 1 ms commit as each bare statement has. rows_after is the REFRESH's own row count, so no view is scanned twice."
target "$P" "pg_runbook: refresh_analytics_views_concurrent(max_parallel => 2)" "baseline: refresh_materialized_views_staggered() (sequential)" le 0.6 rate
target "$P" "limit: the 20 bare REFRESH statements split over 2 concurrent sessions, without parallel query as the workers" "baseline: refresh_materialized_views_staggered() (sequential)" le 0.6 rate
target "$P" "pg_runbook: refresh_analytics_views_concurrent(max_parallel => 2)" "limit: the 20 bare REFRESH statements split over 2 concurrent sessions, without parallel query as the workers" le 1.1 rate
target "$P" "pg_runbook: refresh_analytics_views_concurrent(max_parallel => 2)" "reference: the 20 bare REFRESH statements in one session without parallel query (one core)" le 0.6 rate
target "$P" "limit: the 20 bare REFRESH statements split over 2 concurrent sessions, without parallel query as the workers" "reference: the 20 bare REFRESH statements in one session without parallel query (one core)" le 0.6 rate
# The chain's order in every parallel run: each view of it started after the one it reads had
# finished (from the log the workers wrote).
kept=$(q bench "SELECT coalesce(bool_and(c.started_at >= p.finished_at), false) || ' in ' || count(*) / 2 || ' runs'
  FROM mv_refresh_runs r
  JOIN (VALUES ('v19', 'v18'), ('v20', 'v19')) AS d(child, parent) ON true
  JOIN mv_refresh_log c ON c.run_id = r.run_id AND c.matview = d.child AND c.status = 'success'
  JOIN mv_refresh_log p ON p.run_id = r.run_id AND p.matview = d.parent AND p.status = 'success'
  WHERE r.run_id > $first_run AND r.parallelism > 1")
note "$P" "The same views and sizes as the staggered refresh above, measured in the same loop. Every figure is the statements' own time on the server (psql's \\timing; for the two sessions, their span on the server's clock from a common start), without psql's start and connection (~35 ms per psql on this VM, no part of any refresh). Both sides refresh every view CONCURRENTLY in its own transaction and log it; the parallel one on 2 workers, on a 2-core machine. The cluster keeps PostgreSQL's default parallel query, so each REFRESH of the sequential baseline scans the events with a parallel worker on the second core: against it, 0.5x is not the physical limit. It is against a run on one core, the reference row (the same 20 bare statements without parallel query). The parallel run's workers refresh without parallel query (2 workers already take both cores; with it, two sessions measured 0.80x of the baseline). The limit row splits the statements 10/10 in a fixed order (the chain's three dearer views in one session); the function balances its views as workers free up, so it can come out below that row. What this VM's two cores give (2026-12-02, a quiet machine): two sessions of bare SELECTs of the views' query take 0.56x of one session's time, not 0.5x, so the cores slow each other down by about a tenth before any refresh work; and the same code's ratios move by up to 0.05 between runs. The chain v18 <- v19 <- v20 kept its order (each started after the one it reads had finished): $kept."
