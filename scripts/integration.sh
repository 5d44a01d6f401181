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

# Core dumps on: a crash in any test leaves a core file in the data directory (the kernel's
# core_pattern here is the relative "core"), and the run fails on it.
ulimit -c unlimited
cluster_start integration
trap 'cluster_destroy integration' EXIT
failed=()
for t in "${tests[@]}"; do
  say "integration: $t"
  if bash "$REPO/tests/integration/$t.sh"; then echo "ok: $t"; else failed+=("$t"); echo "FAILED: $t"; fi
done
cores=$(find "$RUN_DIR/integration" -name 'core*' -type f 2>/dev/null || true)
if [ -n "$cores" ]; then
  echo "core files left by the server (read them with gdb \$PGBIN/postgres FILE):"; echo "$cores"
  failed+=("(core files)")
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed integration tests: ${failed[*]}"
  tail -30 "$RUN_DIR/integration/server.log"
  exit 1
fi
