#!/usr/bin/env bash
# health check: cached health_check() under pgbench, against SELECT 1 (the floor of a call) and the
# uncached checks (the same function with the cache disabled).
. "$(dirname "$0")/lib.sh"
# More runs than the usual 5: a 2-core VM's throughput drifts by tens of percent from minute to
# minute, and these ratios are close to their targets; the median of more interleaved runs holds.
RUNS=$(size 7 1)
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
target "$B" "pg_runbook: health_check() cached" "limit: SELECT a constant jsonb like the result" ge 0.9 rate
note "$B" "Where the time goes (perf over the whole machine during a pgbench run, 2026-11-23): pgbench itself takes about a third of the two cores; the call's own code (read the stored members out of shared memory, write the jsonb binary with this call's cached, age_ms and cache) is about 1.5% of the samples; the rest above SELECT 1 is returning about 330 bytes of jsonb (jsonb_out's escape_json is the top server symbol) (a trivial C function, health_live(), runs at SELECT 1's rate under the same pgbench). The constant-jsonb row is that output without the call, and the last target row compares the cached call with it: on this VM returning the output alone costs 15-25% of SELECT 1's throughput (more in noisy minutes), so 0.8x SELECT 1 is at the edge of what any function returning this jsonb can reach; shrinking the output further would mean dropping per-check results the issue asks for."
