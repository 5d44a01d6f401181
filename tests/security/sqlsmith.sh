#!/usr/bin/env bash
# sqlsmith against a database with pg_runbook: a few thousand random queries over the catalog,
# the extension's tables and functions, and a small application schema; then every function of
# the extension called with edge values in each argument (fuzz_calls.sql: sqlsmith reaches few of
# them). Fails on any crashed backend and on any internal error (XX000) raised inside pg_runbook;
# other errors are what random SQL produces and are only counted.
#   tests/security/sqlsmith.sh [QUERIES]   (default 3000; SEED picks the random seed)
. "$(dirname "$0")/../../scripts/lib.sh"
QUERIES=${1:-3000}
SEED=${SEED:-4242}

cluster_start sqlsmith "$PRELOAD_ALL" \
  "log_line_prefix = '%m [%p] %e '" "log_error_verbosity = verbose" \
  "statement_timeout = '2s'" "lock_timeout = '1s'" "max_connections = 40"
trap 'cluster_destroy sqlsmith' EXIT
LOG=$RUN_DIR/sqlsmith/server.log
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS smith" -c "CREATE DATABASE smith" >/dev/null
psql -X -q -d smith -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE EXTENSION pg_runbook;
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, total numeric, created_at timestamptz DEFAULT now());
INSERT INTO orders SELECT g, g % 7, g * 1.5 FROM generate_series(1, 100) g;
CREATE INDEX ON orders (customer_id);
CREATE MATERIALIZED VIEW order_totals AS SELECT customer_id, sum(total) AS total FROM orders GROUP BY 1;
SELECT record_request('/a', g, CASE WHEN g % 10 = 0 THEN 500 ELSE 200 END) FROM generate_series(1, 50) g;
SELECT rollup_metrics();
SELECT cache_put('k', '{"a": 1}', '1 hour', '{t}');
SQL
mark=$(wc -c < "$LOG")

say "sqlsmith: $QUERIES queries (seed $SEED)"
# sqlsmith exits non-zero when the server goes away; the log decides either way.
timeout 900 sqlsmith --target="host=$PGHOST port=$PGPORT dbname=smith user=postgres" \
  --seed="$SEED" --max-queries="$QUERIES" >"$RUN_DIR/sqlsmith/sqlsmith.out" 2>&1 || true

say "every pg_runbook function with edge values in each argument"
fuzz_rc=0
psql -X -q -d smith -v ON_ERROR_STOP=1 -f "$(dirname "$0")/fuzz_calls.sql" >"$RUN_DIR/sqlsmith/fuzz.out" 2>&1 || fuzz_rc=$?
grep -E "fuzz:|XX0" "$RUN_DIR/sqlsmith/fuzz.out" | head -40 || true

new_log() { tail -c +"$((mark + 1))" "$LOG"; }
crashes=$(new_log | grep -c "terminated by signal\|was terminated by exception" || true)
# An internal error's LOCATION names the source that raised it; ours are Rust files of pg_runbook
# (src/...rs) or carry its name.
internal=$(new_log | grep -A3 " XX000 ERROR:" | grep -c "pg_runbook\|src/[a-z_/]*\.rs" || true)
errors=$(new_log | grep -c " ERROR:" || true)
echo "sqlsmith: $errors errors from random SQL, $crashes crashed backends, $internal internal errors in pg_runbook"
if [ "$crashes" != 0 ] || [ "$internal" != 0 ] || [ "$fuzz_rc" != 0 ]; then
  new_log | grep -B2 -A6 "terminated by signal\| XX000 ERROR:" | head -80
  exit 1
fi
