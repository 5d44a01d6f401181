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
for _ in $(seq "$n"); do echo 'SELECT 1;'; done >"$dir/floor.sql"
# The sum of each statement's round trip as psql's \timing measures it (one session, the queries
# in turn, as the exporter runs them), without psql's own start-up. Rows are fetched by the client.
scrape_ms() {
  psql -X -q -d bench_monitoring -v ON_ERROR_STOP=1 -o /dev/null -c '\timing on' -f "$1" 2>&1 \
    | awk '/^Time:/ { t += $2; n++ } END { if (n == 0) exit 1; printf "%.3f\n", t }'
}
for _ in $(seq "$RUNS"); do
  measure "$B" "pg_runbook: one scrape ($n queries)" "$(scrape_ms "$dir/scrape.sql")" "ms"
  measure "$B" "floor: $n x SELECT 1" "$(scrape_ms "$dir/floor.sql")" "ms"
done
target "$B" "pg_runbook: one scrape ($n queries)" - le 100 abs
psql -X -q -d bench -c "DROP DATABASE IF EXISTS bench_monitoring WITH (FORCE)" >/dev/null
