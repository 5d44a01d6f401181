#!/usr/bin/env bash
# rollup and SLO over a week: rollup_metrics() folding a week of raw metrics (20 endpoints,
# log-normal durations) against INSERT ... SELECT ... GROUP BY with percentile_cont (and, as a peer,
# the tdigest extension's aggregate); then check_slo_compliance('7 days') and per-bucket p95/p99
# from the rollups against percentile_cont per 5-minute bucket over the raw rows.
. "$(dirname "$0")/lib.sh"
R="rollup"; S="SLO over a week"
ROWS=${ROWS:-$(size 10000000 20000)}
worker bench off
q postgres "ALTER SYSTEM SET pg_runbook.metrics_retention = '30d'; " >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
q bench "CREATE EXTENSION IF NOT EXISTS tdigest" >/dev/null

echo "generating $ROWS raw rows over 7 days" >&2
q bench "TRUNCATE performance_metrics;
  INSERT INTO performance_metrics (created_at, endpoint, method, status_code, duration_ms, cache_hit)
  SELECT now() - interval '7 days' + (g::float8 / $ROWS) * interval '7 days' + interval '1 minute',
         '/api/endpoint/' || (g % 20), 'GET',
         CASE WHEN random() < 0.01 THEN 500 ELSE 200 END,
         exp(ln(80) + 0.7 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())),
         random() < 0.6
  FROM generate_series(1, $ROWS) g" >/dev/null
q bench "VACUUM ANALYZE performance_metrics" >/dev/null

q bench "CREATE TABLE IF NOT EXISTS bench_rollup_plain (bucket timestamptz, endpoint text, requests bigint,
           errors bigint, p50 float8, p95 float8, p99 float8, max_ms float8, avg_ms float8, cache_hits bigint);
         CREATE TABLE IF NOT EXISTS bench_rollup_tdigest (bucket timestamptz, endpoint text, requests bigint,
           errors bigint, digest tdigest, max_ms float8, avg_ms float8, cache_hits bigint)" >/dev/null

reset_rollup="TRUNCATE performance_analytics_5min, metrics_rollup_log;
  UPDATE metrics_rollup_state SET folded_snapshot = NULL, run_xid = NULL, id_floor = 0"
plain="INSERT INTO bench_rollup_plain
  SELECT date_bin('5 minutes', created_at, '2000-01-01'), endpoint, count(*), count(*) FILTER (WHERE status_code >= 500),
         percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms),
         percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms), max(duration_ms), avg(duration_ms),
         count(*) FILTER (WHERE cache_hit)
  FROM performance_metrics GROUP BY GROUPING SETS ((1, 2), (1))"
tdigest="INSERT INTO bench_rollup_tdigest
  SELECT date_bin('5 minutes', created_at, '2000-01-01'), endpoint, count(*), count(*) FILTER (WHERE status_code >= 500),
         tdigest(duration_ms, 100), max(duration_ms), avg(duration_ms), count(*) FILTER (WHERE cache_hit)
  FROM performance_metrics GROUP BY GROUPING SETS ((1, 2), (1))"
for _ in $(seq "$RUNS"); do
  q bench "$reset_rollup" >/dev/null
  measure "$R" "pg_runbook: rollup_metrics()" "$(time_ms bench "SELECT rollup_metrics()")" ms
  q bench "TRUNCATE bench_rollup_plain" >/dev/null
  measure "$R" "baseline: INSERT ... GROUP BY with percentile_cont" "$(time_ms bench "$plain")" ms
  q bench "TRUNCATE bench_rollup_tdigest" >/dev/null
  measure "$R" "peer: INSERT ... GROUP BY with tdigest(duration_ms, 100)" "$(time_ms bench "$tdigest")" ms
done
target "$R" "pg_runbook: rollup_metrics()" "baseline: INSERT ... GROUP BY with percentile_cont" ge 3 speedup
target "$R" "pg_runbook: rollup_metrics()" - le 20000 abs
note "$R" "$ROWS raw rows over 7 days, 20 endpoints, log-normal durations (median 80 ms); every variant writes per-endpoint and all-endpoints rows for each 5-minute bucket."

# ---- SLO over a week, from the rollups just made ---------------------------------------------------
q bench "$reset_rollup; SELECT rollup_metrics()" >/dev/null
runbook="SELECT * FROM check_slo_compliance('7 days');
         SELECT bucket, p95_ms, p99_ms FROM api_metrics_5m WHERE bucket >= now() - interval '7 days' ORDER BY bucket"
plain="SELECT date_bin('5 minutes', created_at, '2000-01-01') AS bucket,
              percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms)
       FROM performance_metrics WHERE created_at >= now() - interval '7 days' GROUP BY 1 ORDER BY 1"
for _ in $(seq "$RUNS"); do
  measure "$S" "pg_runbook: check_slo_compliance('7 days') + per-bucket p95/p99 from rollups" "$(time_ms bench "$runbook")" ms
  measure "$S" "baseline: percentile_cont per 5-minute bucket over raw rows" "$(time_ms bench "$plain")" ms
done
target "$S" "pg_runbook: check_slo_compliance('7 days') + per-bucket p95/p99 from rollups" \
  "baseline: percentile_cont per 5-minute bucket over raw rows" ge 100 speedup
err=$(q bench "WITH exact AS (
    SELECT date_bin('5 minutes', created_at, '2000-01-01') AS bucket,
           percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95,
           percentile_disc(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99
    FROM performance_metrics GROUP BY 1)
  SELECT round(100 * max(greatest(abs(a.p95_ms - e.p95) / e.p95, abs(a.p99_ms - e.p99) / e.p99))::numeric, 3)
  FROM exact e JOIN api_metrics_5m a USING (bucket)")
measure "$S" "accuracy: worst relative error of sketch p95/p99 vs percentile_disc, all buckets" "$err" "%"
target "$S" "accuracy: worst relative error of sketch p95/p99 vs percentile_disc, all buckets" - le 1 abs

# ---- footprint of one day -------------------------------------------------------------------------
raw=$(q bench "SELECT sum(pg_column_size(m.*)) FROM performance_metrics m WHERE created_at >= now() - interval '1 day'")
day=$(q bench "SELECT sum(pg_column_size(p.*)) FROM performance_analytics_5min p WHERE bucket >= now() - interval '1 day'")
note "$S" "One day on disk (row sizes): raw metrics ${raw:-0} bytes; 5-minute rollups with sketches ${day:-0} bytes."
worker bench on
