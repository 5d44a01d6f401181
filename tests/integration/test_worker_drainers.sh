#!/usr/bin/env bash
# Drains that share: four sessions draining beside the worker and two producers never fail each
# other (each event processed once, no call fails), a rolled-back drain leaves cache_stats()
# unchanged, and the drain procedure keeps every batch it committed when it is cancelled.
. "$(dirname "$0")/lib.sh"

DB=$(fresh_db it_drainers)
q postgres "ALTER SYSTEM SET pg_runbook.database = '$DB'" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
wait_for "$DB" "SELECT EXISTS (SELECT 1 FROM worker_status() WHERE database = '$DB' AND state = 'idle')" 30 \
  || echo "worker did not start: $(q "$DB" 'SELECT * FROM worker_status()')"
q "$DB" "CREATE TABLE drained_log (id bigint);
  CREATE FUNCTION log_drained() RETURNS trigger LANGUAGE plpgsql SET search_path = public AS \$\$
  BEGIN INSERT INTO drained_log SELECT id FROM gone; RETURN NULL; END \$\$;
  CREATE TRIGGER log_drained AFTER DELETE ON cache_invalidation_queue
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION log_drained();" >/dev/null

# --- producers enqueue keys and tags that overlap (the same key twice, tags covering keys), four
# drainers call the function in a loop beside the worker; every failure is counted
q "$DB" "INSERT INTO query_cache (cache_key, result, tags, expires_at, owner_role)
         SELECT 'k' || g, '1', ARRAY['t' || (g % 20)], now() + interval '1 hour', 'postgres'::regrole FROM generate_series(1, 20000) g" >/dev/null
errs=$RUN_DIR/integration/drainers.err; : > "$errs"
pids=()
for p in 1 2; do
  psql -X -q -d "$DB" -c "DO \$\$ BEGIN FOR i IN 1..60 LOOP
      PERFORM invalidate_cache('k' || ((i * 37 + g) % 20000)) FROM generate_series(1, 50) g;
      PERFORM invalidate_cache_tag('t' || (i % 20));
      INSERT INTO query_cache (cache_key, result, tags, expires_at, owner_role)
        SELECT 'n$p-' || i || '-' || g, '1', ARRAY['t' || (g % 20)], now() + interval '1 hour', 'postgres'::regrole FROM generate_series(1, 100) g;
      COMMIT; END LOOP; END \$\$" >/dev/null 2>>"$errs" & pids+=($!)
done
calls=0
for d in 1 2 3 4; do
  ( for i in $(seq 1 40); do
      psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "SELECT drain_cache_invalidation_queue(50, 1)" >/dev/null 2>>"$errs" \
        || echo "call failed" >>"$errs"
    done ) & pids+=($!)
  calls=$((calls + 40))
done
wait "${pids[@]}"
once=$(q "$DB" "SELECT count(*) = count(DISTINCT id) AND count(*) = 2 * 60 * 51 FROM drained_log")
# Entries stored after their tag's last event are not stale; one more event per tag covers them.
q "$DB" "SELECT drain_cache_invalidation_queue(1000, 30)" >/dev/null
q "$DB" "TRUNCATE drained_log; SELECT invalidate_cache_tag('t' || g) FROM generate_series(0, 19) g" >/dev/null
q "$DB" "SELECT drain_cache_invalidation_queue(1000, 30)" >/dev/null
check "four_drainers_beside_the_worker_never_fail ($calls calls)" "$(grep -c -E 'ERROR|WARNING|failed' "$errs" || true)" "0"
[ -s "$errs" ] && head -5 "$errs"
check "concurrent_drains_process_each_event_exactly_once" "$once" "t"
check "concurrent drains leave the queue empty" "$(q "$DB" "SELECT count(*) FROM cache_invalidation_queue")" "0"
check "every invalidated tag is gone from the cache" \
  "$(q "$DB" "SELECT count(*) FROM query_cache WHERE tags && (SELECT array_agg('t' || g) FROM generate_series(0, 19) g)")" "0"

# --- a rolled-back drain changes no counter; a committed one adds what it drained
q postgres "ALTER SYSTEM SET pg_runbook.worker_enabled = off" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
wait_for "$DB" "SELECT state = 'disabled' FROM worker_status()" 10
before=$(q "$DB" "SELECT events_drained_total FROM cache_stats()")
q "$DB" "SELECT invalidate_cache('rb' || g) FROM generate_series(1, 500) g" >/dev/null
psql -X -q -d "$DB" -c "BEGIN" -c "SELECT drain_cache_invalidation_queue()" -c "ROLLBACK" >/dev/null
check "rolled_back_drain_leaves_cache_stats_unchanged" "$(q "$DB" "SELECT events_drained_total FROM cache_stats()")" "$before"
check "rolled-back drain leaves its events queued" "$(q "$DB" "SELECT count(*) FROM cache_invalidation_queue")" "500"
psql -X -q -d "$DB" -c "BEGIN" -c "SAVEPOINT s" -c "SELECT drain_cache_invalidation_queue(100, 5)" \
  -c "ROLLBACK TO SAVEPOINT s" -c "SELECT drain_cache_invalidation_queue(100, 5) FROM generate_series(1, 1) WHERE false" -c "COMMIT" >/dev/null
check "a drain rolled back to a savepoint adds nothing" "$(q "$DB" "SELECT events_drained_total FROM cache_stats()")" "$before"
q "$DB" "SELECT drain_cache_invalidation_queue(100, 5)" >/dev/null
check "committed_drain_counts_what_it_drained" "$(q "$DB" "SELECT events_drained_total - $before FROM cache_stats()")" "500"

# --- the procedure commits batch by batch: cancelled half-way, it keeps what it finished
q "$DB" "INSERT INTO cache_invalidation_queue (cache_key) SELECT 'p' || g FROM generate_series(1, 3000) g" >/dev/null
first=$(q "$DB" "SELECT min(id) FROM cache_invalidation_queue")
q "$DB" "CREATE FUNCTION slow_drain() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN PERFORM pg_sleep(0.2); RETURN NULL; END \$\$;
         CREATE TRIGGER slow_drain AFTER DELETE ON cache_invalidation_queue FOR EACH STATEMENT EXECUTE FUNCTION slow_drain()" >/dev/null
PGAPPNAME=it_proc bg "$DB" "CALL drain_cache_invalidation_queue_batches(100, 600)"
wait_for "$DB" "SELECT count(*) >= 300 FROM drained_log WHERE id >= $first" 30 || true
q "$DB" "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'it_proc'" >/dev/null
wait_for "$DB" "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'it_proc'" 10
left=$(q "$DB" "SELECT count(*) FROM cache_invalidation_queue")
check "cancelled_drain_procedure_keeps_the_batches_it_committed" "$([ "$left" -lt 3000 ] && [ "$left" -gt 0 ] && echo yes || echo "left $left")" "yes"
check "committed batches of the procedure are counted" \
  "$(q "$DB" "SELECT events_drained_total - $before - 500 FROM cache_stats()")" "$((3000 - left))"
q "$DB" "DROP TRIGGER slow_drain ON cache_invalidation_queue" >/dev/null
check "drain procedure reports what it drained" \
  "$(q "$DB" "CALL drain_cache_invalidation_queue_batches(100, 60)")" "$left"
check_match "drain procedure refuses a negative max_seconds with 22023" \
  "$(psql -X -q -d "$DB" -v VERBOSITY=verbose -c "CALL drain_cache_invalidation_queue_batches(100, -1)" 2>&1 || true)" "22023"

q postgres "ALTER SYSTEM RESET pg_runbook.database" >/dev/null
q postgres "ALTER SYSTEM RESET pg_runbook.worker_enabled" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
finish
