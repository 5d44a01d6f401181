# Helpers for integration tests, sourced by each tests/integration/test_*.sh.
# The cluster is already running (scripts/integration.sh); PGHOST/PGPORT/PGUSER are exported.
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
# shellcheck disable=SC1091
. "$RUN_DIR/integration/env"

TEST_NAME=$(basename "$0" .sh)
failures=0

# fresh_db NAME: a new database with the extension created; printed for use as $DB.
fresh_db() {
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null
  q "$1" "CREATE EXTENSION pg_runbook" >/dev/null
  echo "$1"
}

# bg DB SQL: runs SQL in a background psql session; its pid is in $!.
bg() { psql -X -q -d "$1" -c "$2" >/dev/null 2>&1 & }

# wait_for DB SQL [SECONDS]: polls until SQL returns 't'.
wait_for() {
  local db=$1 sql=$2 limit=${3:-20} i=0
  while [ "$(q "$db" "$sql" 2>/dev/null || true)" != "t" ]; do
    i=$((i + 1)); [ $i -le $((limit * 10)) ] || return 1; sleep 0.1
  done
}

check() { # check DESCRIPTION ACTUAL EXPECTED
  if [ "$2" == "$3" ]; then echo "  ok   $1"; else
    echo "  FAIL $1"; echo "       expected: $3"; echo "       actual:   $2"; failures=$((failures + 1)); fi
}

check_match() { # check_match DESCRIPTION ACTUAL REGEX
  if [[ "$2" =~ $3 ]]; then echo "  ok   $1"; else
    echo "  FAIL $1"; echo "       expected to match: $3"; echo "       actual: $2"; failures=$((failures + 1)); fi
}

finish() { [ "$failures" -eq 0 ] || { echo "$TEST_NAME: $failures failed"; exit 1; }; }
