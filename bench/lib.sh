# Helpers for benchmarks, sourced by bench/*.sh. The cluster is running (scripts/bench.sh) with a
# database `bench` holding the extension. A benchmark prints result lines on stdout:
#   measure <benchmark> <variant> <value> <unit>        one run's value
#   target <benchmark> <variant> <baseline-variant> <op> <ratio> <unit-kind>
#   target <benchmark> <variant> <baseline-variant|-> <ge|le> <number> <speedup|rate|abs>
#     speedup: baseline median time / variant median time; rate: variant median / baseline median;
#     abs: the variant's median itself
#   note <benchmark> <text>
# and anything else to stderr.
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
# shellcheck disable=SC1091
. "$RUN_DIR/bench/env"
RUNS=${RUNS:-$([ "${QUICK:-0}" = 1 ] && echo 1 || echo 5)}

# size FULL QUICK: the full size, or the quick one under QUICK=1.
size() { if [ "${QUICK:-0}" = 1 ]; then echo "$2"; else echo "$1"; fi; }

# time_ms DB SQL: runs SQL once through psql and prints the server round trip in milliseconds as
# psql's \timing measures it. The rows are fetched by the client, so the result is used.
time_ms() {
  psql -X -q -d "$1" -v ON_ERROR_STOP=1 -o /dev/null -c '\timing on' -c "$2" 2>&1 \
    | awk '/^Time:/ { t = $2 } END { if (t == "") exit 1; print t }' \
    || psql -X -q -d "$1" -v ON_ERROR_STOP=1 -o /dev/null -c '\timing on' -c "$2" 1>&2
}

measure() { echo "measure	$1	$2	$3	$4"; }
target() { echo "target	$1	$2	$3	$4	$5	$6"; }
note() { echo "note	$1	$2"; }

# time_file_ms DB FILE: wall-clock milliseconds for psql to run a whole script file.
time_file_ms() {
  local start end
  start=$(date +%s%N)
  psql -X -q -d "$1" -v ON_ERROR_STOP=1 -o /dev/null -f "$2" >/dev/null
  end=$(date +%s%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", (e - s) / 1000000 }'
}

# time_statements_ms DB FILE [PGOPTIONS]: the sum of psql's \timing over the statements of FILE
# (each statement's server round trip), without psql's start and connection (~35 ms on this VM),
# which is no part of the work compared.
time_statements_ms() {
  local out
  out=$(PGOPTIONS=${3:-} psql -X -q -d "$1" -v ON_ERROR_STOP=1 -o /dev/null -c '\timing on' -f "$2" 2>&1) \
    || { echo "$out" >&2; return 1; }
  awk '/^Time:/ { t += $2; n++ } END { if (n == 0) exit 1; printf "%.3f\n", t }' <<<"$out"
}

# worker DB on|off: turns the background worker on or off for the benchmark cluster, so it neither
# competes with nor helps a measurement it is not part of.
worker() {
  [ "$(q postgres "SELECT count(*) FROM pg_settings WHERE name = 'pg_runbook.worker_enabled'")" = 1 ] || return 0
  q postgres "ALTER SYSTEM SET pg_runbook.worker_enabled = $2" >/dev/null
  q postgres "SELECT pg_reload_conf()" >/dev/null
  sleep 1
}
