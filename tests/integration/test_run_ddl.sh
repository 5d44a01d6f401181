#!/usr/bin/env bash
# run_ddl against a real second session holding a conflicting lock: it retries, logging each
# attempt with the blocker, and succeeds once the lock is released; it gives up naming the blocker
# when the lock is held past the last try; a role in runbook_operator may call it.
. "$(dirname "$0")/lib.sh"
DB=$(fresh_db it_run_ddl)
q "$DB" "CREATE SCHEMA \"Shop\"; CREATE TABLE \"Shop\".\"Orders\" (id int PRIMARY KEY, total int);
  INSERT INTO \"Shop\".\"Orders\" SELECT g, g FROM generate_series(1, 1000) g" >/dev/null

cleanup() { q "$DB" "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE 'it_%'" >/dev/null || true; }
trap cleanup EXIT
holding() { wait_for "$DB" "SELECT count(*) = 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'it_holder' AND l.relation = '\"Shop\".\"Orders\"'::regclass AND l.granted"; }

echo "a reader holds ACCESS SHARE for about 1.5 s: run_ddl retries, then succeeds"
PGAPPNAME=it_holder bg "$DB" "BEGIN; SELECT count(*) FROM \"Shop\".\"Orders\"; SELECT pg_sleep(1.5); COMMIT;"
holding
holder=$(q "$DB" "SELECT pid FROM pg_stat_activity WHERE application_name = 'it_holder'")
out=$(psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "CALL run_ddl('ALTER TABLE \"Shop\".\"Orders\" ADD COLUMN note text', lock_timeout => '200ms', retries => 10, backoff => '200ms')" 2>&1) && rc=0 || rc=$?
check "run_ddl_retries_then_succeeds_when_the_lock_is_released" "$rc" "0"
check "the column was added" "$(q "$DB" "SELECT count(*) FROM pg_attribute WHERE attrelid = '\"Shop\".\"Orders\"'::regclass AND attname = 'note'")" "1"
check_match "earlier attempts were logged as lock timeouts blocked by the reader" \
  "$(q "$DB" "SELECT string_agg(DISTINCT outcome || ':' || coalesce(blocked_by::text, '-'), ',') FROM ddl_attempt_log WHERE outcome = 'lock_timeout'")" \
  "^lock_timeout:\{$holder\}$"
check "the last attempt is logged done" "$(q "$DB" "SELECT outcome FROM ddl_attempt_log ORDER BY id DESC LIMIT 1")" "done"
check_match "each blocker is described with its application" \
  "$(q "$DB" "SELECT blockers FROM ddl_attempt_log WHERE outcome = 'lock_timeout' LIMIT 1")" "pid $holder \(postgres, it_holder, "
wait

echo "the lock is held past the last try: run_ddl gives up naming the blocker"
PGAPPNAME=it_holder bg "$DB" "BEGIN; LOCK TABLE \"Shop\".\"Orders\" IN ROW EXCLUSIVE MODE; SELECT pg_sleep(30);"
holding
holder=$(q "$DB" "SELECT pid FROM pg_stat_activity WHERE application_name = 'it_holder'")
out=$(psql -X -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$DB" -c "\\set VERBOSITY verbose" -c "CALL run_ddl('ALTER TABLE \"Shop\".\"Orders\" ADD COLUMN other int', lock_timeout => '100ms', retries => 2, backoff => '100ms')" 2>&1) && rc=0 || rc=$?
check "run_ddl_gives_up_with_55P03_after_the_last_try" "$rc" "1"
check_match "the error is lock_not_available" "$out" "55P03"
check_match "run_ddl_names_the_blocker_when_it_gives_up" "$out" "gave up after 3 attempts: lock not available, blocked by pid $holder "
check "three attempts were logged and committed despite the error" \
  "$(q "$DB" "SELECT count(*) FROM ddl_attempt_log WHERE statement LIKE '%ADD COLUMN other%' AND outcome = 'lock_timeout'")" "3"
check "the column was not added" "$(q "$DB" "SELECT count(*) FROM pg_attribute WHERE attrelid = '\"Shop\".\"Orders\"'::regclass AND attname = 'other'")" "0"
cleanup
wait

echo "run_ddl runs the DDL as the caller: an operator without rights on the table is refused"
q "$DB" "DROP ROLE IF EXISTS it_deployer; CREATE ROLE it_deployer LOGIN IN ROLE runbook_operator;
  GRANT USAGE ON SCHEMA \"Shop\" TO it_deployer" >/dev/null
out=$(psql -X -q -U it_deployer -d "$DB" -c "CALL run_ddl('ALTER TABLE \"Shop\".\"Orders\" ADD COLUMN x int')" 2>&1) || true
check_match "run_ddl_runs_as_the_caller_not_the_owner" "$out" "must be owner of table Orders"
check "the refused attempt is logged as an error, under the caller's name" \
  "$(q "$DB" "SELECT outcome || ' ' || username FROM ddl_attempt_log ORDER BY id DESC LIMIT 1")" "error it_deployer"
out=$(psql -X -q -U it_deployer -d "$DB" -c "INSERT INTO ddl_attempt_log (statement, attempt, outcome) VALUES ('x', 1, 'done')" 2>&1) || true
check_match "the log cannot be written directly by an operator" "$out" "permission denied"

out=$(psql -X -q -U it_deployer -d "$DB" -c "SET pg_runbook.ddl_log_retention = '1s'" 2>&1) || true
check_match "an operator cannot shorten the retention to erase the log" "$out" "permission denied to set parameter"
check "an operator may lint (runbook_reader's right)" \
  "$(psql -X -q -A -t -U it_deployer -d "$DB" -c "SELECT rule FROM lint_migration('VACUUM FULL \"Shop\".\"Orders\"')")" "vacuum_full"

echo "retention: rows older than pg_runbook.ddl_log_retention are pruned by the next attempt"
q "$DB" "UPDATE ddl_attempt_log SET attempted_at = now() - interval '2 days'" >/dev/null
psql -X -q -d "$DB" -c "SET pg_runbook.ddl_log_retention = '1d'" -c "CALL run_ddl('ALTER TABLE \"Shop\".\"Orders\" ADD COLUMN y int')" >/dev/null
check "run_ddl_prunes_attempts_older_than_the_retention" "$(q "$DB" "SELECT count(*) FROM ddl_attempt_log")" "1"
q "$DB" "DROP OWNED BY it_deployer; DROP ROLE it_deployer" >/dev/null
finish
