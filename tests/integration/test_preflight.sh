#!/usr/bin/env bash
# preflight_checks / assert_preflight against conditions created for real: a session holding a
# lock that another waits on, a long pg_sleep query, a session idle in transaction, and an invalid
# index left by a CREATE UNIQUE INDEX CONCURRENTLY that failed on duplicates.
. "$(dirname "$0")/lib.sh"
DB=$(fresh_db it_preflight)
q "$DB" "CREATE TABLE accounts (id int, email text); INSERT INTO accounts VALUES (1, 'a'), (2, 'a');"

cleanup() { q "$DB" "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE 'it_%'" >/dev/null || true; }
trap cleanup EXIT

echo "blocked lock wait: FAIL naming the blocker"
PGAPPNAME=it_holder bg "$DB" "BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);"
wait_for "$DB" "SELECT count(*) = 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'it_holder' AND l.relation = 'accounts'::regclass AND l.granted"
PGAPPNAME=it_waiter bg "$DB" "SELECT count(*) FROM accounts;"
wait_for "$DB" "SELECT count(*) = 1 FROM pg_locks WHERE NOT granted AND relation = 'accounts'::regclass"
holder=$(q "$DB" "SELECT pid FROM pg_stat_activity WHERE application_name = 'it_holder'")
check "a short wait is only a WARN with the default 30 s threshold" \
  "$(q "$DB" "SELECT status FROM preflight_checks() WHERE \"check\" = 'blocked_lock_waits'")" "WARN"
sleep 1.2
row=$(q "$DB" "SELECT status || '|' || detail FROM preflight_checks(lock_wait_fail => '1 second') WHERE \"check\" = 'blocked_lock_waits'")
check_match "a wait longer than lock_wait_fail is FAIL" "$row" "^FAIL\|"
check_match "the detail names the blocking pid" "$row" "blocked by pid $holder"
rc=0; err=$(psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "SELECT * FROM assert_preflight(lock_wait_fail => '1 second', cache_hit_warn_pct => 0, cache_hit_fail_pct => 0)" 2>&1 >/dev/null) || rc=$?
check "assert_preflight stops a psql -v ON_ERROR_STOP=1 script" "$rc" "1"
check_match "its message names the failing check" "$err" "preflight failed: blocked_lock_waits"
cleanup

echo "long-running query: WARN, then FAIL past a lowered threshold"
PGAPPNAME=it_sleeper bg "$DB" "SELECT pg_sleep(60);"
wait_for "$DB" "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'it_sleeper' AND state = 'active' AND clock_timestamp() - query_start > interval '1.2 seconds'"
sleeper=$(q "$DB" "SELECT pid FROM pg_stat_activity WHERE application_name = 'it_sleeper'")
check "over long_query_warn only: WARN" \
  "$(q "$DB" "SELECT status FROM preflight_checks(long_query_warn => '1 second', long_query_fail => '1 hour') WHERE \"check\" = 'long_running_queries'")" "WARN"
row=$(q "$DB" "SELECT status || '|' || detail FROM preflight_checks(long_query_warn => '0', long_query_fail => '1 second') WHERE \"check\" = 'long_running_queries'")
check_match "over long_query_fail: FAIL naming the pid and query" "$row" "^FAIL\|pid $sleeper for .*: SELECT pg_sleep\(60\)"
cleanup

echo "idle in transaction: WARN"
( echo "BEGIN; SELECT 1;"; sleep 30 ) | PGAPPNAME=it_idle psql -X -q -d "$DB" >/dev/null 2>&1 &
wait_for "$DB" "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'it_idle' AND state = 'idle in transaction' AND clock_timestamp() - state_change > interval '1.2 seconds'"
check "idle in transaction longer than the threshold is WARN" \
  "$(q "$DB" "SELECT status FROM preflight_checks(idle_in_transaction_warn => '1 second') WHERE \"check\" = 'idle_in_transaction'")" "WARN"
cleanup

echo "invalid index from a failed CREATE INDEX CONCURRENTLY: FAIL naming it"
psql -X -q -d "$DB" -c "CREATE UNIQUE INDEX CONCURRENTLY accounts_email_key ON accounts (email)" >/dev/null 2>&1 || true
check "the failed build left an invalid index" \
  "$(q "$DB" "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = 'accounts_email_key'::regclass")" "t"
check "invalid_indexes is FAIL and names it with what mends it" \
  "$(q "$DB" "SELECT status || '|' || detail FROM preflight_checks() WHERE \"check\" = 'invalid_indexes'")" \
  "FAIL|invalid: public.accounts_email_key (a concurrent build failed or was cancelled; once the keys are unique, build it again with CREATE UNIQUE INDEX CONCURRENTLY accounts_email_key ON public.accounts USING btree (email); run: DROP INDEX CONCURRENTLY IF EXISTS public.accounts_email_key)"
advice=$(q "$DB" "SELECT substring(detail from 'run: (.*)\)$') FROM preflight_checks() WHERE \"check\" = 'invalid_indexes'")
psql -X -q -d "$DB" -v ON_ERROR_STOP=1 -c "$advice" >/dev/null
check "the printed statement, run, clears the check" \
  "$(q "$DB" "SELECT status FROM preflight_checks() WHERE \"check\" = 'invalid_indexes'")" "PASS"

echo "installed in another schema, called with an empty search_path"
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS it_preflight_schema WITH (FORCE)" -c "CREATE DATABASE it_preflight_schema" >/dev/null
q it_preflight_schema "CREATE SCHEMA runbook; CREATE EXTENSION pg_runbook SCHEMA runbook;" >/dev/null
check "every check runs from schema runbook with search_path = ''" \
  "$(q it_preflight_schema "SET search_path = ''; SELECT count(*) FROM runbook.preflight_checks()")" "10"
check "the functions live in schema runbook" \
  "$(q it_preflight_schema "SELECT count(*) FROM pg_proc WHERE pronamespace = 'runbook'::regnamespace AND proname IN ('preflight_checks', 'assert_preflight', 'health_check', 'health_live', 'runbook_setting')")" "5"

finish
