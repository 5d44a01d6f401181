#!/usr/bin/env bash
# ingest: record_requests(jsonb) in batches of 1000 against a plain multi-row INSERT of the same rows
# into the same table.
. "$(dirname "$0")/lib.sh"
B="ingest (batches of 1000)"
BATCHES=$(size 200 3)
dir=$RUN_DIR/bench-ingest; mkdir -p "$dir"
worker bench off
python3 - "$dir" "$BATCHES" <<'PY'
import json, random, sys
d, n = sys.argv[1], int(sys.argv[2])
random.seed(7)
with open(f"{d}/runbook.sql", "w") as rb, open(f"{d}/plain.sql", "w") as pl:
    for _ in range(n):
        rows = [{"endpoint": f"/api/endpoint/{random.randrange(20)}", "method": "GET",
                 "status_code": 500 if random.random() < 0.01 else 200,
                 "duration_ms": round(random.lognormvariate(4.4, 0.7), 3),
                 "cache_hit": random.random() < 0.6} for _ in range(1000)]
        rb.write("SELECT record_requests('" + json.dumps(rows) + "');\n")
        values = ",".join(f"('{r['endpoint']}','GET',{r['status_code']},{r['duration_ms']},{str(r['cache_hit']).lower()})" for r in rows)
        pl.write("INSERT INTO performance_metrics (endpoint, method, status_code, duration_ms, cache_hit) VALUES " + values + ";\n")
PY
for _ in $(seq "$RUNS"); do
  q bench "TRUNCATE performance_metrics" >/dev/null
  measure "$B" "pg_runbook: record_requests(jsonb)" "$(time_file_ms bench "$dir/runbook.sql")" ms
  q bench "TRUNCATE performance_metrics" >/dev/null
  measure "$B" "baseline: multi-row INSERT" "$(time_file_ms bench "$dir/plain.sql")" ms
done
q bench "TRUNCATE performance_metrics" >/dev/null
target "$B" "pg_runbook: record_requests(jsonb)" "baseline: multi-row INSERT" ge 0.7 speedup
note "$B" "$BATCHES batches of 1000 rows each, sent by psql one statement per batch; wall-clock time for all batches."
worker bench on
