#!/usr/bin/env bash
# One launcher, every database: 20 databases served by 20 workers within pg_runbook.max_workers,
# the ones over the budget reported as unserved (log and worker_status) and served once the budget
# grows, each database's cache counters kept apart, a missing database retried with a growing
# backoff (one log line per attempt), a later CREATE EXTENSION picked up without a restart, honest
# states in worker_status() and pg_stat_activity, and a dead pid never shown as working.
. "$(dirname "$0")/lib.sh"
log=$RUN_DIR/integration/server.log
set_conf() { q postgres "ALTER SYSTEM SET $1 = '$2'" >/dev/null; q postgres "SELECT pg_reload_conf()" >/dev/null; }

dbs=(); for i in $(seq -w 1 20); do dbs+=("it_many_$i"); fresh_db "it_many_$i" >/dev/null 2>&1; done
list=$(IFS=,; echo "${dbs[*]}")
served() { q it_many_01 "SELECT count(*) FROM worker_status() WHERE database LIKE 'it_many_%' AND pid IS NOT NULL AND state = 'idle'"; }

# --- a budget of 15: 15 served, 5 said to be unserved
set_conf pg_runbook.max_workers 15
set_conf pg_runbook.database "$list"
wait_for it_many_01 "SELECT count(*) = 15 FROM worker_status() WHERE database LIKE 'it_many_%' AND state = 'idle'" 60 || true
sleep 2
check "a_budget_of_15_serves_15_of_20_databases" "$(served)" "15"
check "the other 5 are unserved, with the reason" \
  "$(q it_many_01 "SELECT count(*) FROM worker_status() WHERE state = 'unserved' AND pid IS NULL AND last_error LIKE '%pg_runbook.max_workers (15)%'")" "5"
check "each unserved database is named in the log once" \
  "$(grep -c 'unserved: pg_runbook.max_workers (15)' "$log")" "5"

# --- the budget grows: every database served, without a restart
set_conf pg_runbook.max_workers 25
wait_for it_many_01 "SELECT count(*) = 20 FROM worker_status() WHERE database LIKE 'it_many_%' AND state = 'idle' AND pid IS NOT NULL" 60 || true
check "twenty_databases_each_get_a_worker" "$(served)" "20"
check "one worker process per database" \
  "$(q postgres "SELECT count(DISTINCT datname) || '/' || count(*) FROM pg_stat_activity WHERE backend_type = 'pg_runbook worker' AND datname LIKE 'it_many_%'")" "20/20"
for db in it_many_17 it_many_20; do
  q "$db" "SELECT cache_get('nothing_here')" >/dev/null
  check "cache counters of $db are its own" "$(q "$db" "SELECT misses FROM cache_stats()")" "1"
done
q it_many_19 "SELECT cache_put('k', '1', '1 hour', '{t}'); SELECT invalidate_cache_tag('t')" >/dev/null
wait_for it_many_19 "SELECT count(*) = 0 FROM query_cache" 10
check "the worker of the 19th database drains its queue" "$(q it_many_19 "SELECT count(*) FROM query_cache")" "0"
check_match "pg_stat_activity shows the worker's step" \
  "$(q it_many_19 "SELECT state || ': ' || query FROM pg_stat_activity WHERE backend_type = 'pg_runbook worker' AND datname = 'it_many_19'")" \
  "^idle: idle$"

# --- a dead pid is not shown as working
pid=$(q it_many_01 "SELECT pid FROM worker_status() WHERE database = 'it_many_01'")
q postgres "SELECT pg_terminate_backend($pid, 10000)" >/dev/null
check "a_terminated_worker_is_not_shown_with_its_dead_pid" \
  "$(q it_many_01 "SELECT count(*) FROM worker_status() WHERE pid = $pid")" "0"
wait_for it_many_01 "SELECT pid IS NOT NULL AND state = 'idle' FROM worker_status() WHERE database = 'it_many_01'" 30
check "the launcher starts it again" "$(q it_many_01 "SELECT pid <> $pid FROM worker_status() WHERE database = 'it_many_01'")" "t"

# --- a listed database that does not exist: backed off, one log line per attempt
before=$(grep -c 'no_such_db' "$log" || true)
set_conf pg_runbook.database "it_many_01,no_such_db"
sleep 10
lines=$(( $(grep -c 'no_such_db' "$log") - before ))
check_match "a_missing_database_is_retried_with_a_growing_backoff (4 attempts in 10 s: 0, 1, 3, 7 s)" "$lines" "^[345]$"
check_match "worker_status shows it backing off" \
  "$(q it_many_01 "SELECT state || ': ' || last_error FROM worker_status() WHERE database = 'no_such_db'")" \
  "^backing off: database \"no_such_db\" listed in pg_runbook.database does not exist \(attempt [0-9]+\); looking again in [0-9]+ s$"
check "databases no longer listed are no longer shown" \
  "$(q it_many_01 "SELECT string_agg(database, ',' ORDER BY database) FROM worker_status()")" "it_many_01,no_such_db"
wait_for postgres "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_runbook worker' AND datname <> 'it_many_01'" 20
check "their workers stop" "$(q postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_runbook worker'")" "1"

# --- a database that creates the extension later is picked up without a restart
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS it_late WITH (FORCE)" -c "CREATE DATABASE it_late" >/dev/null
set_conf pg_runbook.database "it_late"
wait_for it_many_01 "SELECT state = 'waiting for CREATE EXTENSION' AND pid IS NULL FROM worker_status() WHERE database = 'it_late'" 30 || true
check "worker_status says a database without the extension is waiting for it" \
  "$(q it_many_01 "SELECT state FROM worker_status() WHERE database = 'it_late'")" "waiting for CREATE EXTENSION"
q it_late "CREATE EXTENSION pg_runbook" >/dev/null
wait_for it_many_01 "SELECT state = 'idle' AND pid IS NOT NULL FROM worker_status() WHERE database = 'it_late'" 30 || true
check "create_extension_later_is_picked_up_without_a_restart" \
  "$(q it_many_01 "SELECT state FROM worker_status() WHERE database = 'it_late'")" "idle"

# --- shared memory sized by pg_runbook.max_databases: a database beyond it is said to be unserved
# and its counters are not kept, never written over another database's
q postgres "ALTER SYSTEM SET pg_runbook.max_databases = 3" >/dev/null
q postgres "ALTER SYSTEM SET pg_runbook.database = 'it_many_01,it_many_02,it_many_03,it_many_04'" >/dev/null
cluster_restart integration
wait_for it_many_01 "SELECT count(*) = 3 FROM worker_status() WHERE state = 'idle'" 30 || true
check "shared_memory_holds_max_databases_slots" "$(q it_many_01 "SELECT count(*) FROM worker_status()")" "3"
check "the database beyond it is named in the log" \
  "$(grep -c 'database "it_many_04" unserved: shared memory has room for 3 databases' "$log")" "1"
check_match "a session there is told its counters are not kept" \
  "$(psql -X -q -d it_many_04 -c "SELECT cache_get('x')" 2>&1)" "WARNING: .*room for 3 databases.*not kept"
check "the served databases' counters are untouched by it" "$(q it_many_01 "SELECT misses FROM cache_stats()")" "0"
q postgres "ALTER SYSTEM RESET pg_runbook.max_databases" >/dev/null
q postgres "ALTER SYSTEM RESET pg_runbook.database" >/dev/null
q postgres "ALTER SYSTEM RESET pg_runbook.max_workers" >/dev/null
cluster_restart integration
for db in "${dbs[@]}" it_late; do psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; done
finish
