#!/usr/bin/env bash
# Integration tests: each tests/integration/test_*.sh needs a whole server around the extension
# (several sessions, shared_preload_libraries, restarts, pg_cron). They share one throwaway
# cluster, started here and torn down after; each test makes its own database.
#   scripts/integration.sh               run them all
#   scripts/integration.sh test_health   run some
. "$(dirname "$0")/lib.sh"

if [ $# -gt 0 ]; then tests=("$@"); else
  tests=(); for f in "$REPO"/tests/integration/test_*.sh; do tests+=("$(basename "$f" .sh)"); done
fi

cluster_start integration
trap 'cluster_destroy integration' EXIT
failed=()
for t in "${tests[@]}"; do
  say "integration: $t"
  if bash "$REPO/tests/integration/$t.sh"; then echo "ok: $t"; else failed+=("$t"); echo "FAILED: $t"; fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed integration tests: ${failed[*]}"
  tail -30 "$RUN_DIR/integration/server.log"
  exit 1
fi
