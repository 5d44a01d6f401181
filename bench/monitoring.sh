#!/usr/bin/env bash
# monitoring scrape: every query of monitoring/queries.yaml (what postgres_exporter runs per scrape)
# against 30 days of rollups, beside the floor of as many trivial statements. The issue asks for a
# full scrape well under 100 ms.
. "$(dirname "$0")/lib.sh"
B="monitoring scrape (all queries.yaml queries, 30 days of rollups)"
DAYS=$(size 30 1)
dir=$RUN_DIR/bench-monitoring; mkdir -p "$dir"
psql -X -q -d bench -c "DROP DATABASE IF EXISTS bench_monitoring WITH (FORCE)" -c "CREATE DATABASE bench_monitoring" >/dev/null
q bench_monitoring "CREATE EXTENSION pg_runbook" >/dev/null
# Traffic every 5 minutes for DAYS days on three endpoints, folded by the real rollup.
q bench_monitoring "SELECT record_requests(jsonb_agg(jsonb_build_object(
      'endpoint', '/api/e' || (g % 3), 'duration_ms', 5 + (g * 7919) % 400,
      'status_code', CASE WHEN g % 97 = 0 THEN 500 ELSE 200 END, 'cache_hit', g % 4 <> 0,
      'at', now() - make_interval(mins => 5 * (g / 6)))))
    FROM generate_series(0, $DAYS * 288 * 6 - 1) g;
    SELECT rollup_metrics();" >/dev/null
note "$B" "$(q bench_monitoring "SELECT count(*) || ' rollup rows over ' || $DAYS || ' days' FROM performance_analytics_5min")"
python3 - "$REPO/monitoring/queries.yaml" >"$dir/scrape.sql" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    if line.startswith("  query: "):
        print(json.loads(line[len("  query: "):]) + ";")
PY
n=$(grep -c ';$' "$dir/scrape.sql")
yes 'SELECT 1;' | head -n "$n" >"$dir/floor.sql"
for _ in $(seq "$RUNS"); do
  measure "$B" "pg_runbook: one scrape ($n queries)" "$(time_file_ms bench_monitoring "$dir/scrape.sql")" "ms"
  measure "$B" "floor: $n x SELECT 1" "$(time_file_ms bench_monitoring "$dir/floor.sql")" "ms"
done
target "$B" "pg_runbook: one scrape ($n queries)" - le 100 abs
psql -X -q -d bench -c "DROP DATABASE IF EXISTS bench_monitoring WITH (FORCE)" >/dev/null
