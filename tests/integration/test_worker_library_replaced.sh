#!/usr/bin/env bash
# No crash when the library is replaced beneath the running server, as a package upgrade (write a
# new file, rename it over the old one) and `make install` (remove, then copy) do: the worker and
# the sessions carry on, a worker restarted afterwards serves again, and no process dies of a
# signal. (Overwriting the file in place, as a plain `cp` onto it does, changes the code every
# running process has mapped and does crash them: nothing in the library can prevent that, so
# the Makefile removes the old file before `cargo pgrx test` copies its build there.)
# scripts/integration.sh runs the cluster with core dumps enabled and fails on any core file.
. "$(dirname "$0")/lib.sh"
log=$RUN_DIR/integration/server.log
lib=$("$PG_CONFIG" --pkglibdir)/pg_runbook.so
rebuilt=$REPO/target/debug/libpg_runbook.so
[ -f "$rebuilt" ] || rebuilt=$lib

DB=$(fresh_db it_library)
q postgres "ALTER SYSTEM SET pg_runbook.database = '$DB'" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
wait_for "$DB" "SELECT EXISTS (SELECT 1 FROM worker_status() WHERE state = 'idle' AND pid IS NOT NULL)" 30
signals_before=$(grep -c 'terminated by signal' "$log" || true)

# Sessions keep enqueueing, caching and draining while the file is replaced twice.
load_err=$RUN_DIR/integration/library_load.err
PGAPPNAME=it_library_load psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "DO \$\$ BEGIN FOR i IN 1..400 LOOP
    PERFORM cache_put('k' || i, '1', '1 hour', '{lib}'); PERFORM cache_get('k' || (i - 1));
    PERFORM invalidate_cache_tag('lib'); COMMIT; PERFORM pg_sleep(0.02); END LOOP; END \$\$" >/dev/null 2>"$load_err" &
sleep 1
cp "$rebuilt" "$lib.new" && mv -f "$lib.new" "$lib"          # a package upgrade: rename over
sleep 2
rm -f "$lib" && cp "$rebuilt" "$lib"                          # make install: remove, then copy
wait_for "$DB" "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'it_library_load'" 60
check "the_sessions_carry_on_while_the_library_is_replaced" "$(cat "$load_err")" ""
q "$DB" "SELECT cache_put('after', '1', '1 hour', '{after}')" >/dev/null
check "a new session uses the replaced library" "$(q "$DB" "SELECT cache_get('after')")" "1"
q "$DB" "SELECT invalidate_cache_tag('after')" >/dev/null
wait_for "$DB" "SELECT count(*) = 0 FROM cache_invalidation_queue" 15
check "the worker still drains after the library was replaced" "$(q "$DB" "SELECT count(*) FROM cache_invalidation_queue")" "0"

# A worker started after the replacement (SIGTERM, then the launcher) serves again.
pid=$(q "$DB" "SELECT pid FROM worker_status()")
q "$DB" "SELECT pg_terminate_backend($pid, 10000)" >/dev/null
wait_for "$DB" "SELECT pid IS NOT NULL AND pid <> $pid AND state = 'idle' FROM worker_status()" 30
q "$DB" "SELECT cache_put('late', '1', '1 hour', '{late}'); SELECT invalidate_cache_tag('late')" >/dev/null
wait_for "$DB" "SELECT count(*) = 0 FROM query_cache WHERE cache_key = 'late'" 15
check "a_worker_restarted_after_the_replacement_serves_again" "$(q "$DB" "SELECT count(*) FROM query_cache WHERE cache_key = 'late'")" "0"
check "no process died of a signal" "$(( $(grep -c 'terminated by signal' "$log" || true) - signals_before ))" "0"

q postgres "ALTER SYSTEM RESET pg_runbook.database" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
finish
