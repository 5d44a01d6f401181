#!/usr/bin/env bash
# health_check's cache seen from two sessions (shared memory when preloaded), and its per-backend
# fallback on a cluster that does not preload the library.
. "$(dirname "$0")/lib.sh"
DB=$(fresh_db it_health)
q "$DB" "ALTER DATABASE $DB SET pg_runbook.health_cache_ttl = '1h'" >/dev/null

first=$(q "$DB" "SELECT (h->>'cached') || '|' || (h->>'checked_at') || '|' || (h->>'cache') FROM health_check() h")
second=$(q "$DB" "SELECT (h->>'cached') || '|' || (h->>'checked_at') || '|' || (h->>'cache') FROM health_check() h")
check_match "the first call computes, in the shared cache" "$first" "^(true|false)\|.*\|shared$"
check "a second session gets the cached result with the same checked_at" "$second" "true|$(echo "$first" | cut -d'|' -f2)|shared"

echo "results are per database"
DB2=$(fresh_db it_health_other)
other=$(q "$DB2" "SELECT h->>'checked_at' FROM health_check() h")
check "another database does not get this database's result" \
  "$([ "$other" != "$(echo "$first" | cut -d'|' -f2)" ] && echo different)" "different"

echo "a restart empties the shared cache, and the next call fills it again"
cluster_restart integration
check "first call after a restart computes" "$(q "$DB" "SELECT h->>'cached' FROM health_check() h")" "false"
check "the next one is cached" "$(q "$DB" "SELECT h->>'cached' FROM health_check() h")" "true"

echo "without shared_preload_libraries: a per-backend cache that says so"
cluster_start nopreload "" >/dev/null
q postgres "CREATE EXTENSION IF NOT EXISTS pg_runbook" >/dev/null
q postgres "ALTER DATABASE postgres SET pg_runbook.health_cache_ttl = '1h'" >/dev/null
out=$(psql -X -q -A -t -d postgres \
  -c "SELECT (h->>'cached') || '|' || (h->>'cache') FROM health_check() h" \
  -c "SELECT (h->>'cached') || '|' || (h->>'cache') FROM health_check() h")
check "first call computes, second is cached, both say backend" "$(echo $out)" "false|backend true|backend"
check "a new session has its own cache" \
  "$(q postgres "SELECT (h->>'cached') FROM health_check() h")" "false"
cluster_destroy nopreload

finish
