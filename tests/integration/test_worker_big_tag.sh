#!/usr/bin/env bash
# Bounded locks: invalidating a tag with 600k entries deletes them in chunks, each in its own
# short transaction, so a migration's ALTER TABLE on query_cache gets its lock while the tag is
# still being drained (with one long transaction it would wait for the whole drain).
. "$(dirname "$0")/lib.sh"

DB=$(fresh_db it_big_tag)
q postgres "ALTER SYSTEM SET pg_runbook.database = '$DB'" >/dev/null
q postgres "ALTER SYSTEM SET pg_runbook.worker_enabled = off" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
wait_for "$DB" "SELECT EXISTS (SELECT 1 FROM worker_status() WHERE database = '$DB' AND state = 'disabled')" 30 \
  || echo "worker did not start: $(q "$DB" 'SELECT * FROM worker_status()')"

big() { q "$DB" "SELECT count(*) FROM query_cache WHERE tags @> '{big}'"; }
alter_while_draining() { # $1: what drains; prints "in progress" when the ALTER returned mid-drain
  wait_for "$DB" "SELECT count(*) < 600000 FROM query_cache WHERE tags @> '{big}'" 120 || true
  local waited
  waited=$(psql -X -q -A -t -d "$DB" -c '\timing on' \
    -c "ALTER TABLE query_cache ALTER COLUMN hits SET DEFAULT 0" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
  local left; left=$(big)
  echo "       ($1: ALTER TABLE took $waited ms; $left tagged entries left when it returned)" >&2
  [ "$left" -gt 0 ] && echo "in progress"
}
fill="INSERT INTO query_cache (cache_key, result, tags, expires_at, owner_role)
      SELECT 'big:' || g, '1', '{big}', now() + interval '1 hour', 'postgres'::regrole FROM generate_series(1, 600000) g"
q "$DB" "$fill" >/dev/null
q "$DB" "INSERT INTO query_cache (cache_key, result, tags, expires_at, owner_role)
         SELECT 'small:' || g, '1', '{small}', now() + interval '1 hour', 'postgres'::regrole FROM generate_series(1, 1000) g" >/dev/null
q "$DB" "VACUUM ANALYZE query_cache" >/dev/null

# --- the worker
q "$DB" "SELECT invalidate_cache_tag('big')" >/dev/null
q postgres "ALTER SYSTEM SET pg_runbook.worker_enabled = on" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
check "alter_table_gets_its_lock_while_the_worker_drains_a_600k_tag" "$(alter_while_draining worker)" "in progress"
wait_for "$DB" "SELECT count(*) = 0 FROM cache_invalidation_queue" 300
check "the worker deletes every entry of the tag" "$(big)" "0"
check "the tag's event is gone once its entries are" "$(q "$DB" "SELECT count(*) FROM cache_invalidation_queue")" "0"
check "entries of other tags stay" "$(q "$DB" "SELECT count(*) FROM query_cache WHERE tags @> '{small}'")" "1000"

# --- the drain procedure, worker off
q postgres "ALTER SYSTEM SET pg_runbook.worker_enabled = off" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
wait_for "$DB" "SELECT state = 'disabled' FROM worker_status()" 10
q "$DB" "$fill" >/dev/null
q "$DB" "VACUUM ANALYZE query_cache" >/dev/null
q "$DB" "SELECT invalidate_cache_tag('big')" >/dev/null
PGAPPNAME=it_big_proc bg "$DB" "CALL drain_cache_invalidation_queue_batches(1000, 600)"
check "alter_table_gets_its_lock_while_the_procedure_drains_a_600k_tag" "$(alter_while_draining procedure)" "in progress"
wait_for "$DB" "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'it_big_proc'" 300
check "the procedure deletes every entry of the tag" "$(big)" "0"

q postgres "ALTER SYSTEM RESET pg_runbook.database" >/dev/null
q postgres "ALTER SYSTEM RESET pg_runbook.worker_enabled" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
finish
