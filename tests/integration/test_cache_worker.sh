#!/usr/bin/env bash
# The cache invalidation worker in a real cluster: wake on enqueue, concurrent drainers, SIGKILL,
# malformed events, a failing periodic job, SIGHUP, and single-flight cached_query.
. "$(dirname "$0")/lib.sh"

DB=$(fresh_db cache_worker)
q postgres "ALTER SYSTEM SET pg_runbook.database = 'cache_worker'" >/dev/null
q postgres "ALTER SYSTEM SET pg_runbook.naptime = '1s'" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
wait_for "$DB" "SELECT EXISTS (SELECT 1 FROM worker_status() WHERE database = '$DB' AND state = 'idle')" 30 \
  || echo "worker did not start: $(q "$DB" 'SELECT * FROM worker_status()')"
check "worker serves the test database" "$(q "$DB" "SELECT database FROM worker_status()")" "$DB"

# Every deleted event is logged once, in the deleting transaction (a rolled-back batch logs nothing).
# The worker runs with search_path = pg_catalog, pg_temp, so the trigger it fires names its own path.
q "$DB" "CREATE TABLE drained_log (id bigint);
  CREATE FUNCTION log_drained() RETURNS trigger LANGUAGE plpgsql AS \$\$
  BEGIN INSERT INTO public.drained_log SELECT id FROM gone; RETURN NULL; END \$\$;
  CREATE TRIGGER log_drained AFTER DELETE ON cache_invalidation_queue
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION log_drained();" >/dev/null

# --- an UPDATE on a watched table removes the tagged entries without anyone calling drain
q "$DB" "CREATE TABLE prices (id int PRIMARY KEY, amount int); INSERT INTO prices VALUES (1, 10)" >/dev/null
q "$DB" "SELECT cache_invalidate_on_change('prices', '{prices}')" >/dev/null
q "$DB" "SELECT cache_put('price_list', '[10]', '1 hour', '{prices}'); SELECT cache_put('unrelated', '1', '1 hour', '{other}')" >/dev/null
q "$DB" "UPDATE prices SET amount = 11"
wait_for "$DB" "SELECT NOT EXISTS (SELECT 1 FROM query_cache WHERE cache_key = 'price_list')" 1
check "update_on_watched_table_removes_tagged_entries_within_a_second" \
  "$(q "$DB" "SELECT string_agg(cache_key, ',') FROM query_cache")" "unrelated"

# --- four drainers, the worker and two producers: every event processed exactly once
q "$DB" "TRUNCATE drained_log" >/dev/null
pids=()
for p in 1 2; do
  psql -X -q -d "$DB" -c "DO \$\$ BEGIN FOR i IN 1..40 LOOP
      PERFORM invalidate_cache('p$p-' || i || '-' || g) FROM generate_series(1, 50) g;
      PERFORM invalidate_cache_tag('t' || i); COMMIT; END LOOP; END \$\$" >/dev/null 2>&1 & pids+=($!)
done
for d in 1 2 3 4; do
  psql -X -q -d "$DB" -c "SELECT drain_cache_invalidation_queue(50, 1)" -c "SELECT drain_cache_invalidation_queue(50, 1)" \
    -c "SELECT drain_cache_invalidation_queue(50, 1)" >/dev/null 2>&1 & pids+=($!)
done
wait "${pids[@]}"
q "$DB" "SELECT drain_cache_invalidation_queue(1000, 10)" >/dev/null
check "concurrent_drainers_process_each_event_exactly_once" \
  "$(q "$DB" "SELECT count(*) || '/' || count(DISTINCT id) FROM drained_log")" "4080/4080"
check "concurrent drain leaves the queue empty" "$(q "$DB" "SELECT count(*) FROM cache_invalidation_queue")" "0"

# --- a malformed event is moved aside and logged; the worker keeps draining
q "$DB" "INSERT INTO cache_invalidation_queue (cache_key, tag) VALUES (NULL, NULL)" >/dev/null
q "$DB" "SELECT invalidate_cache('after_malformed')" >/dev/null
wait_for "$DB" "SELECT (SELECT count(*) FROM cache_invalidation_queue) = 0" 10
check "malformed_event_is_moved_aside" "$(q "$DB" "SELECT problem FROM cache_invalidation_rejected")" "neither cache_key nor tag is set"
check_match "malformed event is in worker_status" "$(q "$DB" "SELECT last_error FROM worker_status()")" "malformed"

# --- a job the worker cannot find is an error in worker_status, never a job silently switched
# off: notify_alert_changes() (written in SQL, resolved by its signature) renamed away
q postgres "ALTER SYSTEM SET pg_runbook.rollup_interval = '100ms'" >/dev/null
q "$DB" "ALTER FUNCTION notify_alert_changes() RENAME TO notify_alert_changes_moved" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
wait_for "$DB" "SELECT EXISTS (SELECT 1 FROM worker_status() WHERE last_error LIKE '%notify_alert_changes() does not exist%')" 15
check_match "a_job_whose_function_is_missing_is_recorded_in_worker_status" "$(q "$DB" "SELECT last_error FROM worker_status()")" \
  "running notify_alert_changes\(\): function .*notify_alert_changes\(\) does not exist"
q "$DB" "ALTER FUNCTION notify_alert_changes_moved() RENAME TO notify_alert_changes" >/dev/null

# --- a periodic job that raises is logged, and draining goes on: a migration-like session holds
# performance_metrics locked, so the worker's rollup_metrics() gives up at its lock_timeout
PGAPPNAME=it_metrics_lock bg "$DB" "BEGIN; LOCK TABLE performance_metrics IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);"
wait_for "$DB" "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'it_metrics_lock' AND wait_event = 'PgSleep'"
wait_for "$DB" "SELECT EXISTS (SELECT 1 FROM worker_status() WHERE last_error LIKE '%lock timeout%')" 15
check_match "failing_job_is_recorded_in_worker_status" "$(q "$DB" "SELECT last_error FROM worker_status()")" "rollup_metrics.*lock timeout"
q "$DB" "SELECT cache_put('still_draining', '1', '1 hour', '{d}'); SELECT invalidate_cache_tag('d')" >/dev/null
wait_for "$DB" "SELECT NOT EXISTS (SELECT 1 FROM query_cache WHERE cache_key = 'still_draining')" 15
check "worker_keeps_draining_after_a_failing_job" "$(q "$DB" "SELECT count(*) FROM query_cache WHERE cache_key = 'still_draining'")" "0"
q "$DB" "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'it_metrics_lock'" >/dev/null

# --- ALTER SYSTEM SET pg_runbook.naptime plus a reload takes effect
q postgres "ALTER SYSTEM SET pg_runbook.naptime = '250ms'" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
wait_for "$DB" "SELECT naptime_ms = 250 FROM worker_status()" 10
check "naptime_reload_takes_effect" "$(q "$DB" "SELECT naptime_ms FROM worker_status()")" "250"

# --- ten simultaneous identical cached_query calls run the query once. The query runs read-only
# (no sequence can count it), so it announces each execution with a NOTICE.
q "$DB" "CREATE FUNCTION announced_run() RETURNS int LANGUAGE plpgsql AS \$\$
  BEGIN RAISE NOTICE 'query executed'; PERFORM pg_sleep(0.5); RETURN 1; END \$\$" >/dev/null
runs_dir=$(mktemp -d)
pids=()
for i in $(seq 1 10); do
  psql -X -q -A -t -d "$DB" -c "SELECT cached_query('single_flight', 'SELECT announced_run() AS n', '1 hour')" \
    >"$runs_dir/$i.out" 2>&1 & pids+=($!)
done
wait "${pids[@]}" || true
check "ten_simultaneous_cached_query_calls_run_the_query_once" "$(cat "$runs_dir"/*.out | grep -c 'query executed' || true)" "1"
check "and all ten get its result" "$(grep -h '^\[' "$runs_dir"/*.out | sort | uniq -c | sed 's/^ *//')" '10 [{"n": 1}]'
rm -rf "$runs_dir"

# --- SIGTERM (pg_terminate_backend) ends the worker at once; the postmaster starts it again
term_pid=$(q "$DB" "SELECT pid FROM worker_status()")
q "$DB" "SELECT pg_terminate_backend($term_pid)" >/dev/null
wait_for "$DB" "SELECT pid IS NOT NULL AND pid <> $term_pid AND state = 'idle' FROM worker_status()" 15
check "worker_restarts_after_sigterm" "$(q "$DB" "SELECT pid <> $term_pid FROM worker_status()")" "t"

# --- SIGKILL of the worker mid-drain loses nothing, and it comes back
q "$DB" "TRUNCATE drained_log" >/dev/null
q postgres "ALTER SYSTEM SET pg_runbook.worker_enabled = off" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
wait_for "$DB" "SELECT state = 'disabled' FROM worker_status()" 10
q "$DB" "INSERT INTO cache_invalidation_queue (cache_key) SELECT 'k' || g FROM generate_series(1, 30000) g" >/dev/null
old_pid=$(q "$DB" "SELECT pid FROM worker_status()")
q postgres "ALTER SYSTEM SET pg_runbook.worker_enabled = on" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
wait_for "$DB" "SELECT count(*) > 0 FROM drained_log" 10 || true
kill -9 "$old_pid"
sleep 2
wait_for postgres "SELECT true" 60
wait_for "$DB" "SELECT count(*) = 0 FROM cache_invalidation_queue" 60
new_pid=$(q "$DB" "SELECT pid FROM worker_status()")
check_match "worker_comes_back_after_sigkill" "$new_pid" "^[0-9]+$"
check "new worker pid differs" "$([ "$new_pid" != "$old_pid" ] && echo yes)" "yes"
check "sigkill_mid_drain_loses_nothing" "$(q "$DB" "SELECT count(*) || '/' || count(DISTINCT id) FROM drained_log")" "30000/30000"

q postgres "ALTER SYSTEM RESET pg_runbook.database" >/dev/null
q postgres "ALTER SYSTEM RESET pg_runbook.naptime" >/dev/null
q postgres "ALTER SYSTEM RESET pg_runbook.rollup_interval" >/dev/null
q postgres "ALTER SYSTEM RESET pg_runbook.worker_enabled" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
finish
