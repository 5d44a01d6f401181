-- Migration safety (issue 19): the attempt log of run_ddl() and the run_ddl() procedure itself.
-- lint_migration(), assert_migration_lint() and check_migration_preconditions() are Rust
-- (src/lint/); run_ddl is PL/pgSQL because only a procedure can COMMIT between attempts.

CREATE TABLE @extschema@.ddl_attempt_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    attempted_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    username     name,
    statement    text NOT NULL,
    attempt      integer NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('done', 'lock_timeout', 'error')),
    elapsed_ms   double precision,
    blocked_by   integer[],
    blockers     text,
    error        text
);
CREATE INDEX ddl_attempt_log_attempted_at_idx ON @extschema@.ddl_attempt_log (attempted_at);
COMMENT ON TABLE @extschema@.ddl_attempt_log IS
  'One row per attempt of run_ddl(): outcome, time taken, and the sessions that held a conflicting lock (blocked_by pids, blockers described). Kept for pg_runbook.ddl_log_retention; run_ddl prunes older rows when it writes. Readable by runbook_operator.';

-- run_ddl: one DDL statement, run as the caller under a short lock_timeout; when the lock is not
-- had in time, the attempt is logged (with the blockers), committed, and retried after backoff,
-- backoff * 2, backoff * 4 ... (at most 16 * backoff); after the last try it raises 55P03 naming
-- the blockers. Other errors are logged and raised at once. No SET clause and no search_path
-- reliance: a procedure with a SET clause cannot COMMIT, so every name below is qualified.
CREATE PROCEDURE @extschema@.run_ddl(
    sql text,
    lock_timeout interval DEFAULT '2s',
    retries integer DEFAULT 5,
    backoff interval DEFAULT '1s'
)
LANGUAGE plpgsql AS $run_ddl$
DECLARE
    attempt integer := 0;
    started timestamptz;
    elapsed double precision;
    failed_state text;
    failed_message text;
    pids integer[];
    blockers text;
BEGIN
    PERFORM @extschema@.run_ddl_statement_check(sql, lock_timeout, retries, backoff);
    LOOP
        attempt := attempt OPERATOR(pg_catalog.+) 1;
        failed_state := NULL;
        failed_message := NULL;
        pids := NULL;
        blockers := NULL;
        PERFORM pg_catalog.set_config('lock_timeout',
            pg_catalog.ceil(pg_catalog.date_part('epoch', lock_timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8::pg_catalog.text OPERATOR(pg_catalog.||) 'ms', true);
        started := pg_catalog.clock_timestamp();
        BEGIN
            EXECUTE sql;
        EXCEPTION
            WHEN lock_not_available THEN
                failed_state := SQLSTATE;
                failed_message := SQLERRM;
                SELECT b.blocked_by, b.blockers INTO pids, blockers FROM @extschema@.run_ddl_blockers(sql) b;
            WHEN OTHERS THEN
                failed_state := SQLSTATE;
                failed_message := SQLERRM;
        END;
        elapsed := pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) started) OPERATOR(pg_catalog.*) 1000;
        PERFORM @extschema@.run_ddl_log_attempt(sql, attempt,
            CASE WHEN failed_state IS NULL THEN 'done'
                 WHEN failed_state OPERATOR(pg_catalog.=) '55P03' THEN 'lock_timeout' ELSE 'error' END,
            elapsed, pids, blockers, failed_message);
        COMMIT;
        EXIT WHEN failed_state IS NULL;
        IF failed_state OPERATOR(pg_catalog.<>) '55P03' THEN
            RAISE EXCEPTION USING ERRCODE = failed_state, MESSAGE = failed_message;
        END IF;
        IF attempt OPERATOR(pg_catalog.>) retries THEN
            RAISE EXCEPTION 'run_ddl gave up after % attempts: lock not available, blocked by %', attempt, blockers
                USING ERRCODE = 'lock_not_available',
                      DETAIL = pg_catalog.format('statement: %s', sql),
                      HINT = 'end or wait out the blocking sessions (pg_terminate_backend), then run it again';
        END IF;
        PERFORM pg_catalog.pg_sleep(pg_catalog.date_part('epoch', backoff)
            OPERATOR(pg_catalog.*) pg_catalog.power(2, LEAST(attempt OPERATOR(pg_catalog.-) 1, 4)));
    END LOOP;
END
$run_ddl$;

COMMENT ON PROCEDURE @extschema@.run_ddl(text, interval, integer, interval) IS
  'Runs one DDL statement as the caller under a short lock_timeout, retrying with backoff (commits between attempts, so CALL it outside a transaction block); logs each attempt to ddl_attempt_log; raises 55P03 naming the blockers after the last try. Callable by runbook_operator.';
COMMENT ON FUNCTION @extschema@.lint_migration(text, bigint, bigint) IS
  'Judges each statement of a migration (not executed): lock and on what, rewrite or scan, table size and estimated rows, lock-hold estimate, safe form; PASS/WARN/FAIL from warn_rows / fail_rows estimated rows (defaults: pg_runbook.lint_warn_rows / lint_fail_rows). Callable by runbook_reader.';
COMMENT ON FUNCTION @extschema@.assert_migration_lint(text, bigint, bigint) IS
  'lint_migration(), raising P0004 naming every FAIL. Callable by runbook_reader.';
COMMENT ON FUNCTION @extschema@.check_migration_preconditions(text, bigint, interval) IS
  'Counts, as the caller, the rows that would make a migration''s statements fail (duplicates, NULLs, orphans, CHECK violations), each count bounded by max_rows and timeout. Callable by runbook_reader.';
COMMENT ON FUNCTION @extschema@.run_ddl_statement_check(text, interval, integer, interval) IS
  'run_ddl''s argument check: exactly one DDL statement that can run in a procedure. Callable by runbook_operator.';
COMMENT ON FUNCTION @extschema@.run_ddl_blockers(text) IS
  'Sessions holding or awaiting a lock that conflicts with the statement''s, for run_ddl''s log. Callable by runbook_operator.';
COMMENT ON FUNCTION @extschema@.run_ddl_log_attempt(text, integer, text, double precision, integer[], text, text) IS
  'Writes one run_ddl attempt to ddl_attempt_log (as the extension owner) and prunes rows older than pg_runbook.ddl_log_retention. Callable by runbook_operator.';
