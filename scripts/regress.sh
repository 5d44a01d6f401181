#!/usr/bin/env bash
# SQL regression tests: every tests/sql/NAME.sql is run by pg_regress against a throwaway cluster
# (the library preloaded) and its output compared with tests/expected/NAME.out.
#   scripts/regress.sh            run them all
#   scripts/regress.sh health     run some
#   ACCEPT=1 scripts/regress.sh   copy the actual output over the expected (read it before committing)
. "$(dirname "$0")/lib.sh"

PG_REGRESS=$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress
out=$RUN_DIR/regress-out
rm -rf "$out" && mkdir -p "$out"

if [ $# -gt 0 ]; then tests=("$@"); else
  tests=(); for f in "$REPO"/tests/sql/*.sql; do t=$(basename "$f" .sql); [ "$t" = setup ] || tests+=("$t"); done
fi

# pg_regress gives up at the first test without an expected file; when accepting, start from empty.
if [ "${ACCEPT:-0}" = 1 ]; then
  for t in setup "${tests[@]}"; do touch "$REPO/tests/expected/$t.out"; done
fi

cluster_start regress
trap 'cluster_stop regress' EXIT
rc=0
"$PG_REGRESS" --bindir="$PGBIN" --host="$PGHOST" --port="$PGPORT" --user=postgres \
  --inputdir="$REPO/tests" --outputdir="$out" --dbname=runbook_regress \
  --load-extension=pg_runbook setup "${tests[@]}" || rc=$?

if [ "${ACCEPT:-0}" = 1 ]; then
  for t in setup "${tests[@]}"; do cp "$out/results/$t.out" "$REPO/tests/expected/$t.out"; done
  say "accepted output of: ${tests[*]}"
  exit 0
fi
[ $rc -eq 0 ] || { cat "$out/regression.diffs" 2>/dev/null | head -100; exit $rc; }
