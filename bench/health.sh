#!/usr/bin/env bash
# health check: cached health_check() under pgbench, against SELECT 1 (the floor of a call) and the
# uncached checks (the same function with the cache disabled).
. "$(dirname "$0")/lib.sh"
B="health check (pgbench -c 8 -M prepared)"
SECS=$(size 10 2)
dir=$RUN_DIR/bench-health; mkdir -p "$dir"
echo 'SELECT health_check();' > "$dir/health.sql"
echo 'SELECT 1;' > "$dir/select1.sql"
# The same output as a constant: what returning the result costs, without computing it.
echo "SELECT $(q bench "SELECT quote_literal(health_check()::text)")::jsonb;" > "$dir/constant.sql"

tps() { # tps SCRIPT [PGOPTIONS]
  PGOPTIONS=${2:-} "$PGBIN/pgbench" -n -M prepared -c 8 -j 2 -T "$SECS" -f "$1" bench 2>/dev/null \
    | awk '/^tps/ { print $3; exit }'
}
for _ in $(seq "$RUNS"); do
  measure "$B" "pg_runbook: health_check() cached" "$(tps "$dir/health.sql")" "tps"
  measure "$B" "limit: SELECT 1" "$(tps "$dir/select1.sql")" "tps"
  measure "$B" "limit: SELECT a constant jsonb like the result" "$(tps "$dir/constant.sql")" "tps"
  measure "$B" "baseline: health_check() uncached" "$(tps "$dir/health.sql" "-c pg_runbook.health_cache_ttl=0")" "tps"
done
target "$B" "pg_runbook: health_check() cached" "limit: SELECT 1" ge 0.8 rate
target "$B" "pg_runbook: health_check() cached" "baseline: health_check() uncached" ge 20 rate
note "$B" "Where the time goes (perf over the whole machine during a pgbench run, 2026-11-23): pgbench itself takes about a third of the two cores; the call's own code (read the stored members out of shared memory, write the jsonb binary with this call's cached, age_ms and cache) is about 1.5% of the samples; the rest above SELECT 1 is returning about 330 bytes of jsonb (jsonb_out's escape_json is the top server symbol) and the executor's per-execution setup of a C function call. The constant-jsonb row is that output without the call."
