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
note "$B" "What limits it: a cached call does no catalog work (it copies the stored jsonb out of shared memory and adds cached/age_ms), but it returns a jsonb of several hundred bytes that the server serializes and sends where SELECT 1 sends one byte; the constant-jsonb row shows what returning that output costs by itself."
