-- pg_runbook 0.1.0 -> 0.2.0, run by ALTER EXTENSION pg_runbook UPDATE.
-- Each section is one area's change; the objects it creates or alters match what a fresh
-- install of 0.2.0 creates (the upgrade test compares the two catalogs).
\echo Use "ALTER EXTENSION pg_runbook UPDATE" to load this file. \quit

-- ==== privileges: the three roles (sql/roles.sql) ====
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'runbook_reader') THEN
        CREATE ROLE runbook_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'runbook_operator') THEN
        CREATE ROLE runbook_operator NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'runbook_admin') THEN
        CREATE ROLE runbook_admin NOLOGIN;
    END IF;
END
$roles$;
GRANT runbook_reader TO runbook_operator;
GRANT runbook_operator TO runbook_admin;
-- The checks read every session, lock and setting, as a monitoring role does.
GRANT pg_monitor TO runbook_reader;
-- ==== end privileges ====



-- ==== security (issue 14): cache entries belong to a role; the cache trigger needs no rights ====
ALTER TABLE @extschema@.query_cache ADD COLUMN owner_role oid, ADD COLUMN query_search_path text;
ALTER TABLE @extschema@.query_cache_stale ADD COLUMN owner_role oid, ADD COLUMN query_search_path text;
-- Entries cached by 0.1.0 had no owner: they become the extension owner's.
UPDATE @extschema@.query_cache SET owner_role = (SELECT extowner FROM pg_catalog.pg_extension
    WHERE extname OPERATOR(pg_catalog.=) 'pg_runbook');
UPDATE @extschema@.query_cache_stale SET owner_role = (SELECT extowner FROM pg_catalog.pg_extension
    WHERE extname OPERATOR(pg_catalog.=) 'pg_runbook');
ALTER TABLE @extschema@.query_cache ALTER COLUMN owner_role SET NOT NULL;
ALTER TABLE @extschema@.query_cache_stale ALTER COLUMN owner_role SET NOT NULL;
ALTER FUNCTION @extschema@.cache_invalidate_trigger() SECURITY DEFINER;
CREATE VIEW @extschema@.cache_entries AS
SELECT cache_key, owner_role::pg_catalog.regrole AS owner_role, tags, hits, created_at, expires_at, last_hit_at
FROM @extschema@.query_cache;
COMMENT ON VIEW @extschema@.cache_entries IS
    'pg_runbook query cache entries without their results or queries (for dashboards; runbook_reader)';
-- A request's time must be finite (record_request(at => 'infinity') landed in the year 294276).
CREATE FUNCTION @extschema@.check_request_time("at" timestamp with time zone, "n" bigint) RETURNS bool
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'check_request_time_wrapper';
COMMENT ON FUNCTION @extschema@.check_request_time(timestamptz, bigint) IS
  'Validates a request''s time for record_request()/record_requests(): NULL or finite, else 22023.';
CREATE OR REPLACE FUNCTION @extschema@.record_requests(requests jsonb) RETURNS bigint
LANGUAGE sql VOLATILE
-- A SQL function takes its table lock before any of its code runs, so it cannot read
-- pg_runbook.lock_timeout in time: it gives up after the setting's default instead of queueing
-- behind a migration (ALTER FUNCTION ... SET lock_timeout changes it).
SET lock_timeout = '1s'
BEGIN ATOMIC
  WITH ins AS (
    INSERT INTO @extschema@.performance_metrics (created_at, endpoint, method, status_code, duration_ms, cache_hit)
    SELECT COALESCE(r.at, now()), r.endpoint, r.method, r.status_code, r.duration_ms, r.cache_hit
    FROM ROWS FROM (jsonb_to_recordset(requests)
           AS (endpoint text, method text, status_code integer, duration_ms double precision, cache_hit boolean, at timestamptz))
         WITH ORDINALITY AS r(endpoint, method, status_code, duration_ms, cache_hit, at, n)
    WHERE @extschema@.check_request(r.endpoint, r.duration_ms, r.status_code, r.n)
      AND @extschema@.check_request_time(r.at, r.n)
    RETURNING 1
  )
  SELECT count(*) FROM ins;
END;
CREATE OR REPLACE FUNCTION @extschema@.record_request(endpoint text, duration_ms double precision, status_code integer,
                                          cache_hit boolean DEFAULT NULL, method text DEFAULT NULL,
                                          at timestamptz DEFAULT now()) RETURNS bigint
LANGUAGE sql VOLATILE
-- A SQL function takes its table lock before any of its code runs, so it cannot read
-- pg_runbook.lock_timeout in time: it gives up after the setting's default instead of queueing
-- behind a migration (ALTER FUNCTION ... SET lock_timeout changes it).
SET lock_timeout = '1s'
BEGIN ATOMIC
  INSERT INTO @extschema@.performance_metrics (created_at, endpoint, method, status_code, duration_ms, cache_hit)
  SELECT COALESCE(at, now()), endpoint, method, status_code, duration_ms, cache_hit
  WHERE @extschema@.check_request(endpoint, duration_ms, status_code, NULL)
    AND @extschema@.check_request_time(at, NULL)
  RETURNING id;
END;
-- ==== end security ====



-- ==== worker (issue 16) ====
CREATE FUNCTION @extschema@."drain_cache_invalidation_batch"("batch_size" INT, "after_id" bigint, "progressed" bool DEFAULT false)
RETURNS TABLE ("events" bigint, "next_after_id" bigint, "progressed" bool)
VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'drain_cache_invalidation_batch_wrapper';

-- Large manual drains: a function runs in its caller's one transaction, so it cannot commit
-- between batches; this procedure does. Every batch it finished stays done when it is cancelled
-- or fails, and each commit releases the rows and the locks the batch held (a tag with many
-- entries is deleted chunk by chunk, each chunk committed). No SET clause: PostgreSQL forbids
-- COMMIT in a procedure that has one, so every name below is qualified instead.
CREATE PROCEDURE @extschema@.drain_cache_invalidation_queue_batches(
    batch_size integer DEFAULT 1000,
    max_seconds integer DEFAULT 600,
    INOUT events_drained bigint DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    after_id pg_catalog.int8 := 0;
    has_progressed boolean := false;
    step record;
    deadline pg_catalog.timestamptz;
BEGIN
    IF max_seconds IS NULL THEN
        RAISE EXCEPTION 'argument "max_seconds" must not be NULL' USING ERRCODE = '22023';
    END IF;
    IF max_seconds OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'invalid value for argument "max_seconds": must not be negative, got %', max_seconds
            USING ERRCODE = '22023';
    END IF;
    deadline := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => max_seconds);
    events_drained := 0;
    LOOP
        SELECT b.events, b.next_after_id, b.progressed INTO step
        FROM @extschema@.drain_cache_invalidation_batch(batch_size, after_id, has_progressed) AS b;
        events_drained := events_drained OPERATOR(pg_catalog.+) step.events;
        COMMIT;
        EXIT WHEN step.next_after_id IS NULL OR pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) deadline;
        after_id := step.next_after_id;
        has_progressed := step.progressed;
    END LOOP;
END $$;
COMMENT ON PROCEDURE @extschema@.drain_cache_invalidation_queue_batches(integer, integer, bigint) IS
    'Drains the invalidation queue committing after every batch (CALL it outside a transaction block); returns the events drained. For runbook_operator';
COMMENT ON FUNCTION @extschema@.drain_cache_invalidation_batch(integer, bigint, boolean) IS
    'One batch of the invalidation drain (the procedure drain_cache_invalidation_queue_batches loops over it): events finished, the id the next batch starts after (NULL when done) and whether the drain progressed since it last started over. For runbook_operator';
COMMENT ON FUNCTION @extschema@.drain_cache_invalidation_queue(integer, integer) IS
    'Processes queued invalidations in batches that never wait for another drainer (an entry another session holds is left for a later batch) until the queue is empty or max_seconds pass; returns the number processed. For runbook_operator';
COMMENT ON FUNCTION @extschema@.worker_status() IS
    'pg_runbook background workers, one row per database served or asked for: pid (NULL when none runs), database, state (starting, waiting for CREATE EXTENSION, idle, draining, rolling up, cleaning up, backing off, unserved, disabled, standby, stopped), last drain, events drained, last error or reason, naptime. For runbook_reader';
-- ==== end worker ====



-- ==== parallel refresh (issue 17) ====
-- The log records the worker and the role each view was refreshed as; runs record their
-- parallelism and total time.
ALTER TABLE @extschema@.mv_refresh_log ADD COLUMN worker int, ADD COLUMN refreshed_by text;
ALTER TABLE @extschema@.mv_refresh_runs
    ADD COLUMN parallelism int NOT NULL DEFAULT 1,
    ADD COLUMN total_ms float8,
    ADD COLUMN refreshed_by text;
COMMENT ON TABLE @extschema@.mv_refresh_log IS
    'One row per materialized view per refresh run: mode (concurrent|plain), status (success|failed|skipped|unchanged), timing, rows after, error, the worker of the run that took it and the role it was refreshed as. Pruned after pg_runbook.refresh_log_retention.';
COMMENT ON TABLE @extschema@.mv_refresh_runs IS
    'Refresh runs: written by the refresh workers when the run starts and when its last worker finishes: parallelism (workers), total_ms (from the call to the end), the role it ran as; refresh_status() shows those still running.';
COMMENT ON SEQUENCE @extschema@.mv_refresh_run_id IS 'Run ids of refresh_materialized_views_staggered() and refresh_analytics_views_concurrent() calls.';
COMMENT ON FUNCTION @extschema@.refresh_materialized_views_staggered(text, text, interval, boolean, interval, interval, boolean) IS
    'Refreshes matching materialized views in dependency order, each in its own transaction in a background worker running as the caller, concurrently where possible, with a pause between views; logs each to mv_refresh_log. A view the caller may not refresh is skipped. For runbook_operator.';
COMMENT ON FUNCTION @extschema@.refresh_materialized_views() IS
    'Refreshes every materialized view the caller may refresh, plainly and in dependency order, logging each to mv_refresh_log. For runbook_operator.';
COMMENT ON FUNCTION @extschema@.refresh_status() IS
    'Refresh runs in flight, one row per worker: how many views are done, the view it refreshes and for how long. For runbook_reader.';
COMMENT ON FUNCTION @extschema@.prune_mv_refresh_log() IS
    'Deletes mv_refresh_log rows older than pg_runbook.refresh_log_retention (a server setting); returns how many. For runbook_admin.';

CREATE FUNCTION @extschema@."refresh_analytics_views_concurrent"(
	"schema_pattern" TEXT DEFAULT '%',
	"name_pattern" TEXT DEFAULT '%',
	"max_parallel" INT DEFAULT NULL,
	"budget" interval DEFAULT '5 minutes',
	"concurrently" bool DEFAULT true,
	"lock_timeout" interval DEFAULT '5s',
	"statement_timeout" interval DEFAULT '0',
	"only_if_changed" bool DEFAULT false
) RETURNS TABLE (
	"matview" TEXT,
	"mode" TEXT,
	"status" TEXT,
	"duration_ms" double precision,
	"rows_after" bigint,
	"worker" INT,
	"detail" TEXT
)
VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', 'refresh_analytics_views_concurrent_wrapper';
COMMENT ON FUNCTION @extschema@.refresh_analytics_views_concurrent(text, text, integer, interval, boolean, interval, interval, boolean) IS
    'Refreshes matching materialized views in dependency order, independent ones in parallel on up to max_parallel background workers (capped by pg_runbook.refresh_max_parallel and the free slots), each as the caller; a row per view and a verdict row against budget naming the slowest chain. For runbook_operator.';
REVOKE EXECUTE ON FUNCTION @extschema@.refresh_analytics_views_concurrent(text, text, integer, interval, boolean, interval, interval, boolean) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION @extschema@.refresh_materialized_views_staggered(text, text, interval, boolean, interval, interval, boolean) TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.refresh_materialized_views() TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.refresh_analytics_views_concurrent(text, text, integer, interval, boolean, interval, interval, boolean) TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.verify_materialized_view_indexes(text, text) TO runbook_reader;
GRANT EXECUTE ON FUNCTION @extschema@.refresh_status() TO runbook_reader;
GRANT EXECUTE ON FUNCTION @extschema@.prune_mv_refresh_log() TO runbook_admin;
GRANT SELECT ON @extschema@.mv_refresh_log, @extschema@.mv_refresh_runs TO runbook_reader;
-- ==== end parallel refresh ====



-- ==== migration lint (issue 19) ====
-- The functions (as pgrx generates them for a fresh install), then sql/lint.sql; the grants are
-- in this area's part of the privileges applied last.
CREATE FUNCTION @extschema@.lint_migration(
	"sql" TEXT, /* Option < & str > */
	"warn_rows" bigint DEFAULT NULL, /* Option < i64 > */
	"fail_rows" bigint DEFAULT NULL /* Option < i64 > */
) RETURNS TABLE (
	"statement" INT,  /* Option < i32 > */
	"first_line" TEXT,  /* Option < String > */
	"rule" TEXT,  /* String */
	"status" TEXT,  /* String */
	"lock_mode" TEXT,  /* Option < String > */
	"lock_on" TEXT,  /* Option < String > */
	"table_work" TEXT,  /* Option < String > */
	"table_bytes" bigint,  /* Option < i64 > */
	"estimated_rows" bigint,  /* Option < i64 > */
	"lock_hold_ms" double precision,  /* Option < f64 > */
	"safe_form" TEXT,  /* Option < String > */
	"detail" TEXT  /* String */
)
VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'lint_migration_wrapper';

CREATE FUNCTION @extschema@.assert_migration_lint(
	"sql" TEXT, /* Option < & str > */
	"warn_rows" bigint DEFAULT NULL, /* Option < i64 > */
	"fail_rows" bigint DEFAULT NULL /* Option < i64 > */
) RETURNS TABLE (
	"statement" INT,  /* Option < i32 > */
	"first_line" TEXT,  /* Option < String > */
	"rule" TEXT,  /* String */
	"status" TEXT,  /* String */
	"lock_mode" TEXT,  /* Option < String > */
	"lock_on" TEXT,  /* Option < String > */
	"table_work" TEXT,  /* Option < String > */
	"table_bytes" bigint,  /* Option < i64 > */
	"estimated_rows" bigint,  /* Option < i64 > */
	"lock_hold_ms" double precision,  /* Option < f64 > */
	"safe_form" TEXT,  /* Option < String > */
	"detail" TEXT  /* String */
)
VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'assert_migration_lint_wrapper';

CREATE FUNCTION @extschema@.check_migration_preconditions(
	"sql" TEXT, /* Option < & str > */
	"max_rows" bigint DEFAULT 1000, /* Option < i64 > */
	"timeout" interval DEFAULT '5s' /* Option < Interval > */
) RETURNS TABLE (
	"statement" INT,  /* i32 */
	"first_line" TEXT,  /* String */
	"check" TEXT,  /* String */
	"status" TEXT,  /* String */
	"object" TEXT,  /* String */
	"violating_rows" bigint,  /* Option < i64 > */
	"detail" TEXT  /* String */
)
VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_migration_preconditions_wrapper';

CREATE FUNCTION @extschema@.run_ddl_statement_check(
	"sql" TEXT, /* Option < & str > */
	"lock_timeout" interval, /* Option < Interval > */
	"retries" INT, /* Option < i32 > */
	"backoff" interval /* Option < Interval > */
) RETURNS bool /* bool */
VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'run_ddl_statement_check_wrapper';

CREATE FUNCTION @extschema@.run_ddl_blockers(
	"sql" TEXT /* Option < & str > */
) RETURNS TABLE (
	"blocked_by" INT[],  /* Vec < i32 > */
	"blockers" TEXT  /* String */
)
VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'run_ddl_blockers_wrapper';

CREATE FUNCTION @extschema@.run_ddl_log_attempt(
	"statement" TEXT, /* Option < & str > */
	"attempt" INT, /* Option < i32 > */
	"outcome" TEXT, /* Option < & str > */
	"elapsed_ms" double precision, /* Option < f64 > */
	"blocked_by" INT[], /* :: std :: option :: Option < Vec < i32 > > */
	"blockers" TEXT, /* Option < & str > */
	"error_message" TEXT /* Option < & str > */
) RETURNS void
VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'run_ddl_log_attempt_wrapper';

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
-- ==== end migration lint ====



-- ==== schema correctness (issue 15) ====
-- Baselines: definitions are now read under search_path = pg_catalog, pg_temp (schema-qualified);
-- partitions' copies of indexes and constraints are kept, marked inherited.
ALTER TABLE @extschema@.schema_baseline_objects ADD COLUMN inherited boolean NOT NULL DEFAULT false;
COMMENT ON TABLE @extschema@.schema_baseline_objects IS
  'One index, constraint or materialized view of a baseline: its definition (pg_get_indexdef, pg_get_constraintdef, pg_get_viewdef, read under search_path = pg_catalog, pg_temp so every name is schema-qualified) and whether it was valid';
COMMENT ON COLUMN @extschema@.schema_baseline_objects.inherited IS
  'A partition''s copy of its parent''s index or constraint: compared, never dropped or re-created by itself';

-- find_unused_indexes: statistics-window aware (verdict unused/unknown; no statement when unknown).
DROP FUNCTION @extschema@.find_unused_indexes(bigint);
CREATE FUNCTION @extschema@.find_unused_indexes(
	"min_size_bytes" bigint DEFAULT 0,
	"min_stats_age" interval DEFAULT NULL
) RETURNS TABLE (
	"schemaname" TEXT,
	"tablename" TEXT,
	"indexname" TEXT,
	"size_bytes" bigint,
	"size" TEXT,
	"stats_reset" timestamp with time zone,
	"verdict" TEXT,
	"detail" TEXT,
	"drop_statement" TEXT
)
STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'find_unused_indexes_wrapper';
COMMENT ON FUNCTION @extschema@.find_unused_indexes(bigint, interval) IS
  'Indexes with no scans since statistics were last reset: verdict unused (with a DROP statement) only when the statistics cover min_stats_age on a primary, else unknown; excluding constraint-backing, unique, replica identity and sole foreign-key indexes. For runbook_reader.';

-- Accepted findings.
CREATE FUNCTION @extschema@.accept_finding(
	"check" TEXT,
	"object" TEXT,
	"reason" TEXT,
	"until" timestamp with time zone DEFAULT NULL
) RETURNS bool
VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', 'accept_finding_wrapper';
CREATE FUNCTION @extschema@.withdraw_finding(
	"check" TEXT,
	"object" TEXT
) RETURNS bool
VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', 'withdraw_finding_wrapper';
-- Accepted findings: a known exception, accepted by someone for a reason until a date. Every
-- check reports a WARN or FAIL it covers as SUPPRESSED (not hidden), and assert_* functions do
-- not raise on it. Rows expired more than 90 days are deleted by accept_finding().
CREATE TABLE @extschema@.accepted_findings (
    "check"     text NOT NULL CHECK ("check" <> ''),
    object      text NOT NULL,
    reason      text NOT NULL CHECK (reason <> ''),
    accepted_by text NOT NULL DEFAULT current_user,
    accepted_at timestamptz NOT NULL DEFAULT now(),
    until       timestamptz,
    PRIMARY KEY ("check", object)
);
COMMENT ON TABLE @extschema@.accepted_findings IS
  'Accepted findings: (check, object) exactly as a check reports them, why, who, until when (NULL: no end). Checks report a covered WARN/FAIL as SUPPRESSED. Kept by pg_dump.';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.accepted_findings', '');
COMMENT ON FUNCTION @extschema@.accept_finding(text, text, text, timestamptz) IS
  'Accepts the WARN/FAIL of check on object until a date (NULL: for good): reported as SUPPRESSED, not raised by assert_* functions. For runbook_admin.';
COMMENT ON FUNCTION @extschema@.withdraw_finding(text, text) IS
  'Withdraws an accepted finding; true when there was one. For runbook_admin.';

-- Privileges, as in sql/privileges.sql (the new functions lose PUBLIC's EXECUTE first).
REVOKE EXECUTE ON FUNCTION @extschema@.find_unused_indexes(bigint, interval),
    @extschema@.accept_finding(text, text, text, timestamptz), @extschema@.withdraw_finding(text, text)
    FROM PUBLIC;
-- Checks and reports: runbook_reader. Baselines and expectations: runbook_operator. Accepting
-- findings and retention (which drops data): runbook_admin.
GRANT EXECUTE ON FUNCTION @extschema@.analyze_index_usage(), @extschema@.find_redundant_indexes(),
    @extschema@.find_unused_indexes(bigint, interval), @extschema@.find_missing_fk_indexes(),
    @extschema@.index_build_progress(), @extschema@.verify_migration_success(),
    @extschema@.assert_migration_success(text), @extschema@.verify_migration(text),
    @extschema@.check_query_plan(text, text, double precision), @extschema@.schema_diff(text),
    @extschema@.rollback_ddl(text), @extschema@.validate_security_configuration(),
    @extschema@.analyze_partition_distribution(double precision),
    @extschema@.check_data_integrity(integer, double precision, double precision),
    @extschema@.generate_compliance_report(text, date)
    TO runbook_reader;
GRANT SELECT ON @extschema@.migration_expectations, @extschema@.schema_baselines,
    @extschema@.schema_baseline_objects, @extschema@.accepted_findings, @extschema@.retention_policies
    TO runbook_reader;
GRANT EXECUTE ON FUNCTION @extschema@.schema_baseline(text, boolean), @extschema@.expect_migration(text, jsonb)
    TO runbook_operator;
GRANT INSERT, UPDATE, DELETE ON @extschema@.migration_expectations, @extschema@.schema_baselines,
    @extschema@.schema_baseline_objects TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.accept_finding(text, text, text, timestamptz),
    @extschema@.withdraw_finding(text, text), @extschema@.apply_data_retention_policies(boolean),
    @extschema@.drop_old_partitions(integer, regclass, boolean)
    TO runbook_admin;
GRANT INSERT, UPDATE, DELETE ON @extschema@.accepted_findings, @extschema@.retention_policies TO runbook_admin;
-- ==== end schema correctness ====



-- ==== monitoring (issue 18) ====
-- The same objects as sql/monitoring.sql, and the grants of its section of sql/privileges.sql.
-- Monitoring: what dashboards, Prometheus and chat bridges read (docs/monitoring.md).
--   performance_analytics_live  the rollups plus the not yet rolled-up tail, computed from raw rows
--   prometheus_alert_rules()    a Prometheus rules file built from slo_definitions/rollback_triggers
--   notify_alert_changes()      NOTIFY pg_runbook_alerts once per SLO level / trigger state change

-- ---- the rollups and the current bucket ----------------------------------------------------------
-- Buckets before the one the last rollup ran in are complete in performance_analytics_5min. From
-- that bucket on, the figures are computed from the raw rows (which stay until
-- pg_runbook.metrics_retention, far longer than a bucket), so a dashboard is never a rollup behind.
CREATE VIEW @extschema@.performance_analytics_live AS
WITH cut AS (
    SELECT COALESCE(pg_catalog.date_bin('5 minutes', s.last_run_at, '2000-01-01 00:00:00+00'),
                    '-infinity'::timestamptz) AS at
    FROM @extschema@.metrics_rollup_state s
)
SELECT p.bucket, p.endpoint, p.requests, p.errors, p.err_rate, p.p50_ms, p.p95_ms, p.p99_ms,
       p.max_ms, p.avg_ms, p.cache_hits, p.cache_hit_rate_percent, true AS rolled_up
FROM @extschema@.performance_analytics_5min p, cut
WHERE p.bucket OPERATOR(pg_catalog.<) cut.at
UNION ALL
SELECT t.bucket, t.endpoint, f.requests, f.errors, f.err_rate, f.p50_ms, f.p95_ms, f.p99_ms,
       f.max_ms, f.avg_ms, f.cache_hits, f.cache_hit_rate_percent, false AS rolled_up
FROM (
    SELECT m.bucket, m.endpoint,
           @extschema@.request_sketch(m.duration_ms, m.status_code, m.cache_hit) AS sketch
    FROM (SELECT pg_catalog.date_bin('5 minutes', r.created_at, '2000-01-01 00:00:00+00') AS bucket,
                 r.endpoint, r.duration_ms, r.status_code, r.cache_hit
          FROM @extschema@.performance_metrics r, cut
          WHERE r.created_at OPERATOR(pg_catalog.>=) cut.at) m
    GROUP BY GROUPING SETS ((m.bucket, m.endpoint), (m.bucket))
) t
CROSS JOIN LATERAL @extschema@.sketch_stats(t.sketch) f;
COMMENT ON VIEW @extschema@.performance_analytics_live IS
  'performance_analytics_5min''s figures (without the sketch) up to the bucket of the last rollup_metrics() run, and from that bucket on the same figures computed from the raw rows (rolled_up false): the current bucket is never missing. endpoint NULL = all endpoints. For dashboards; readable by runbook_reader.';

-- ---- Prometheus alert rules ----------------------------------------------------------------------
-- One alert per SLO rule and per enabled rollback trigger, on the metrics monitoring/queries.yaml
-- exports (the database judges consecutive buckets; Prometheus only routes the verdict), plus the
-- fixed rules for the worker, the queue, error-budget burn and health. Names and texts reach the
-- YAML as JSON strings, which are valid YAML double-quoted scalars and valid PromQL strings.
CREATE FUNCTION @extschema@.prometheus_alert_rules() RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    out text := E'# Generated by pg_runbook''s prometheus_alert_rules(); edit the rules in SQL\n'
                '# (slo_definitions, rollback_triggers), not here.\ngroups:\n';
    r record;
    -- an alert name must be a valid metric name
    alert text;
BEGIN
    out := out || E'- name: pg_runbook_slo\n  rules:\n';
    FOR r IN SELECT d.name, d.metric, d.comparison, d.threshold, d.level, d.consecutive_buckets,
                    d.endpoint, d.description
             FROM @extschema@.slo_definitions d ORDER BY d.name LOOP
        alert := 'PgRunbookSLO_' || pg_catalog.regexp_replace(r.name, '[^A-Za-z0-9_]', '_', 'g');
        out := out
            || '  - alert: ' || alert || E'\n'
            || '    expr: ' || pg_catalog.to_json('pg_runbook_slo_level{slo=' || pg_catalog.to_json(r.name)::text || '} > 0')::text || E'\n'
            || E'    labels:\n'
            || '      severity: ' || pg_catalog.to_json(r.level)::text || E'\n'
            || '      slo: ' || pg_catalog.to_json(r.name)::text || E'\n'
            || E'    annotations:\n'
            || '      summary: ' || pg_catalog.to_json(COALESCE(r.description, r.name))::text || E'\n'
            || '      description: ' || pg_catalog.to_json(pg_catalog.format(
                   'SLO %s on {{ $labels.datname }}: %s %s %s for %s consecutive 5-minute bucket(s)%s (check_slo_compliance())',
                   r.name, r.metric, r.comparison, r.threshold, r.consecutive_buckets,
                   COALESCE(' on endpoint ' || r.endpoint, '')))::text || E'\n';
    END LOOP;

    out := out || E'- name: pg_runbook_rollback\n  rules:\n';
    FOR r IN SELECT t.name, t.metric, t.comparison, t.threshold, t.consecutive_buckets, t.description
             FROM @extschema@.rollback_triggers t WHERE t.enabled ORDER BY t.name LOOP
        alert := 'PgRunbookRollback_' || pg_catalog.regexp_replace(r.name, '[^A-Za-z0-9_]', '_', 'g');
        out := out
            || '  - alert: ' || alert || E'\n'
            || '    expr: ' || pg_catalog.to_json('pg_runbook_rollback_trigger_fired{trigger=' || pg_catalog.to_json(r.name)::text || '} > 0')::text || E'\n'
            || E'    labels:\n'
            || E'      severity: "CRITICAL"\n'
            || '      trigger: ' || pg_catalog.to_json(r.name)::text || E'\n'
            || E'    annotations:\n'
            || '      summary: ' || pg_catalog.to_json('rollback trigger fired: ' || COALESCE(r.description, r.name))::text || E'\n'
            || '      description: ' || pg_catalog.to_json(pg_catalog.format(
                   'Rollback trigger %s on {{ $labels.datname }}: %s %s %s for %s bucket(s); see should_rollback()',
                   r.name, r.metric, r.comparison, r.threshold, r.consecutive_buckets))::text || E'\n';
    END LOOP;

    RETURN out || $rules$- name: pg_runbook_operations
  rules:
  - alert: PgRunbookWorkerDown
    expr: "pg_runbook_worker_up == 0"
    for: 5m
    labels:
      severity: "PAGE"
    annotations:
      summary: "no pg_runbook background worker serves this database"
      description: "Worker state on {{ $labels.datname }}: {{ $labels.state }}. Check shared_preload_libraries and pg_runbook.database; see worker_status()."
  - alert: PgRunbookInvalidationBacklog
    expr: "pg_runbook_cache_oldest_event_age_seconds > 300"
    for: 5m
    labels:
      severity: "WARN"
    annotations:
      summary: "cache invalidation events wait longer than 5 minutes"
      description: "The oldest queued invalidation on {{ $labels.datname }} is {{ $value }} s old; see cache_stats() and worker_status()."
  - alert: PgRunbookErrorBudgetFastBurn
    expr: "pg_runbook_error_budget_fast_burn == 1"
    labels:
      severity: "PAGE"
    annotations:
      summary: "error budget burning at 14.4x or more over 1 h and 5 min"
      description: "See slo_error_budget() on {{ $labels.datname }}."
  - alert: PgRunbookErrorBudgetSlowBurn
    expr: "pg_runbook_error_budget_slow_burn == 1"
    labels:
      severity: "WARN"
    annotations:
      summary: "error budget burning at 6x or more over 6 h and 30 min"
      description: "See slo_error_budget() on {{ $labels.datname }}."
  - alert: PgRunbookUnhealthy
    expr: "pg_runbook_health_status{check=\"overall\"} >= 2"
    for: 2m
    labels:
      severity: "PAGE"
    annotations:
      summary: "health_check() says unhealthy"
      description: "A pre-deployment check fails on {{ $labels.datname }}; see health_check() -> 'problems'."
  - alert: PgRunbookRefreshFailing
    expr: "pg_runbook_refresh_failures_1h > 0"
    labels:
      severity: "WARN"
    annotations:
      summary: "a materialized view refresh failed in the last hour"
      description: "{{ $labels.schemaname }}.{{ $labels.matview }} on {{ $labels.datname }}; see mv_refresh_log."
$rules$;
END
$fn$;
COMMENT ON FUNCTION @extschema@.prometheus_alert_rules() IS
  'A Prometheus rules file (YAML): one alert per SLO rule (pg_runbook_slo_level > 0, severity = the rule''s level) and per enabled rollback trigger (pg_runbook_rollback_trigger_fired > 0, CRITICAL), plus worker, queue, error-budget, health and refresh alerts, on the metrics of monitoring/queries.yaml. Callable by runbook_reader.';

-- ---- NOTIFY on changes ---------------------------------------------------------------------------
-- The last level sent per SLO rule and rollback trigger: one row per rule, so it stays small.
CREATE TABLE @extschema@.alert_state (
    kind       text NOT NULL CHECK (kind IN ('slo', 'rollback')),
    name       text NOT NULL,
    level      text NOT NULL,
    changed_at timestamptz NOT NULL,
    PRIMARY KEY (kind, name)
);
COMMENT ON TABLE @extschema@.alert_state IS
  'The level last announced by notify_alert_changes() for each SLO rule (OK, WARN, PAGE, CRITICAL) and rollback trigger (OK, FIRED). Rows of deleted rules are removed by the next call. Do not edit.';

CREATE FUNCTION @extschema@.notify_alert_changes() RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r record;
    sent integer := 0;
BEGIN
    -- Two concurrent calls would both see the old level and announce the change twice.
    LOCK TABLE @extschema@.alert_state IN SHARE ROW EXCLUSIVE MODE;
    FOR r IN
        WITH now_ AS (
            SELECT 'slo'::text AS kind, c.slo AS name, c.level, c.observed, c.threshold, c.detail
            FROM @extschema@.check_slo_compliance() c
            UNION ALL
            SELECT 'rollback', b."trigger", CASE WHEN b.fired THEN 'FIRED' ELSE 'OK' END,
                   b.observed, b.threshold, b.detail
            FROM @extschema@.should_rollback() b
        )
        SELECT n.*, COALESCE(s.level, 'OK') AS previous
        FROM now_ n
        LEFT JOIN @extschema@.alert_state s
          ON s.kind OPERATOR(pg_catalog.=) n.kind AND s.name OPERATOR(pg_catalog.=) n.name
        WHERE n.level OPERATOR(pg_catalog.<>) COALESCE(s.level, 'OK')
    LOOP
        PERFORM pg_catalog.pg_notify('pg_runbook_alerts', pg_catalog.json_build_object(
            'database', pg_catalog.current_database(), 'kind', r.kind, 'name', r.name,
            'level', r.level, 'previous', r.previous, 'observed', r.observed,
            'threshold', r.threshold, 'detail', r.detail, 'at', pg_catalog.now())::text);
        INSERT INTO @extschema@.alert_state AS s (kind, name, level, changed_at)
        VALUES (r.kind, r.name, r.level, pg_catalog.now())
        ON CONFLICT (kind, name) DO UPDATE SET level = EXCLUDED.level, changed_at = EXCLUDED.changed_at;
        sent := sent OPERATOR(pg_catalog.+) 1;
    END LOOP;
    -- Rules deleted or rollback triggers disabled since: forget them (no notification).
    DELETE FROM @extschema@.alert_state s
    WHERE (s.kind OPERATOR(pg_catalog.=) 'slo' AND NOT EXISTS (
               SELECT FROM @extschema@.slo_definitions d WHERE d.name OPERATOR(pg_catalog.=) s.name))
       OR (s.kind OPERATOR(pg_catalog.=) 'rollback' AND NOT EXISTS (
               SELECT FROM @extschema@.rollback_triggers t
               WHERE t.name OPERATOR(pg_catalog.=) s.name AND t.enabled));
    RETURN sent;
END
$fn$;
COMMENT ON FUNCTION @extschema@.notify_alert_changes() IS
  'Compares each SLO rule''s level (check_slo_compliance) and each rollback trigger''s state (should_rollback, OK/FIRED) over their default 15-minute window with the last one announced (alert_state) and sends NOTIFY pg_runbook_alerts with a JSON payload {database, kind, name, level, previous, observed, threshold, detail, at} once per change; returns how many it sent. A rule never announced counts as OK. The background worker calls it after each rollup. Callable by runbook_operator.';

-- (Its grants: the privileges section at the end.)
-- ==== end monitoring ====



-- ==== privileges, applied last: sql/privileges.sql as a fresh install runs it ====
-- Who may call what: the privilege model of docs/security.md, applied after every object exists.
-- First PUBLIC loses EXECUTE on every function of the extension; then each role gets what its job
-- needs. A function missing from every list below is callable by superusers and the owner only.
DO $revoke$
DECLARE
    f pg_catalog.regprocedure;
BEGIN
    FOR f IN
        SELECT d.objid::pg_catalog.regprocedure
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
        WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
          AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
          AND d.deptype OPERATOR(pg_catalog.=) 'e'
          AND e.extname OPERATOR(pg_catalog.=) 'pg_runbook'
    LOOP
        EXECUTE pg_catalog.format('REVOKE EXECUTE ON ROUTINE %s FROM PUBLIC', f);
    END LOOP;
END
$revoke$;

-- ==== security (issue 14) ====
-- Pure computations over their arguments (sketch math, request validation): anyone.
GRANT EXECUTE ON FUNCTION
    @extschema@.health_live,
    @extschema@.runbook_setting,
    @extschema@.check_request, @extschema@.check_request_time,
    @extschema@.sketch_quantile, @extschema@.sketch_stats,
    @extschema@.sketch_merge, @extschema@.sketch_count,
    @extschema@.sketch_mean, @extschema@.sketch_max, @extschema@.sketch_errors,
    @extschema@.sketch_cache_hits, @extschema@.sketch_cache_lookups,
    @extschema@.rollup_rows
TO PUBLIC;
GRANT EXECUTE ON ROUTINE
    @extschema@.request_sketch,
    @extschema@.sketch_union,
    @extschema@.request_rollup,
    @extschema@.request_sketch_trans,
    @extschema@.sketch_union_trans,
    @extschema@.sketch_combine, @extschema@.sketch_final,
    @extschema@.sketch_serialize, @extschema@.sketch_deserialize,
    @extschema@.request_rollup_trans,
    @extschema@.rollup_combine, @extschema@.rollup_final,
    @extschema@.rollup_serialize, @extschema@.rollup_deserialize
TO PUBLIC;

-- runbook_reader: checks and reports. Read-only; a check of the caller's query
-- (check_query_plan) runs it through the read-only query guard.
GRANT EXECUTE ON FUNCTION
    @extschema@.preflight_checks, @extschema@.assert_preflight,
    @extschema@.health_check,
    @extschema@.analyze_index_usage, @extschema@.find_redundant_indexes,
    @extschema@.find_unused_indexes, @extschema@.find_missing_fk_indexes,
    @extschema@.index_build_progress,
    @extschema@.verify_migration_success, @extschema@.assert_migration_success,
    @extschema@.verify_migration, @extschema@.check_query_plan,
    @extschema@.schema_diff, @extschema@.rollback_ddl,
    @extschema@.verify_materialized_view_indexes, @extschema@.refresh_status,
    @extschema@.check_slo_compliance, @extschema@.should_rollback, @extschema@.assert_no_rollback,
    @extschema@.slo_error_budget,
    @extschema@.cache_stats, @extschema@.worker_status,
    @extschema@.check_data_integrity, @extschema@.validate_security_configuration,
    @extschema@.analyze_partition_distribution, @extschema@.generate_compliance_report
TO runbook_reader;
GRANT SELECT ON
    @extschema@.performance_analytics_5min, @extschema@.api_metrics_5m,
    @extschema@.mv_refresh_log, @extschema@.mv_refresh_runs, @extschema@.mv_refresh_sources,
    @extschema@.slo_definitions, @extschema@.rollback_triggers, @extschema@.retention_policies,
    @extschema@.schema_baselines, @extschema@.schema_baseline_objects,
    @extschema@.migration_expectations,
    @extschema@.metrics_rollup_state, @extschema@.metrics_rollup_log,
    @extschema@.cache_entries
TO runbook_reader;

-- runbook_operator: acts. The query cache's tables are not granted: an entry belongs to the
-- role that stored it and the cache functions read and write them as the extension's owner.
GRANT EXECUTE ON FUNCTION
    @extschema@.cache_put, @extschema@.cache_get, @extschema@.cached_query,
    @extschema@.invalidate_cache, @extschema@.invalidate_cache_tag,
    @extschema@.clean_expired_cache, @extschema@.drain_cache_invalidation_queue,
    @extschema@.warm_cache_top_queries, @extschema@.cache_wake_worker,
    @extschema@.cache_invalidate_on_change, @extschema@.cache_invalidate_off,
    @extschema@.record_request, @extschema@.record_requests, @extschema@.rollup_metrics,
    @extschema@.refresh_materialized_views, @extschema@.refresh_materialized_views_staggered,
    @extschema@.schema_baseline, @extschema@.expect_migration
TO runbook_operator;
GRANT SELECT, INSERT, DELETE ON @extschema@.performance_metrics TO runbook_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    @extschema@.performance_analytics_5min, @extschema@.metrics_rollup_state,
    @extschema@.metrics_rollup_log,
    @extschema@.cache_invalidation_queue, @extschema@.cache_invalidation_rejected,
    @extschema@.schema_baselines, @extschema@.schema_baseline_objects,
    @extschema@.migration_expectations
TO runbook_operator;

-- runbook_admin: configures, and runs retention (which drops and deletes application data).
GRANT EXECUTE ON FUNCTION
    @extschema@.apply_data_retention_policies, @extschema@.drop_old_partitions
TO runbook_admin;
GRANT INSERT, UPDATE, DELETE ON
    @extschema@.slo_definitions, @extschema@.rollback_triggers, @extschema@.retention_policies
TO runbook_admin;
GRANT DELETE ON @extschema@.mv_refresh_log TO runbook_admin;  -- prune_mv_refresh_log()
-- ==== end security ====



-- ==== worker (issue 16) ====
GRANT EXECUTE ON FUNCTION @extschema@.drain_cache_invalidation_batch(integer, bigint, boolean) TO runbook_operator;
GRANT EXECUTE ON PROCEDURE @extschema@.drain_cache_invalidation_queue_batches(integer, integer, bigint) TO runbook_operator;
-- ==== end worker ====



-- ==== parallel refresh (issue 17) ====
-- Refreshing acts (each view as the caller, who must own it or be a member of its owner role);
-- reading runs and the log reports; pruning follows a server setting and is the admin's.
GRANT EXECUTE ON FUNCTION @extschema@.refresh_materialized_views_staggered(text, text, interval, boolean, interval, interval, boolean) TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.refresh_materialized_views() TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.refresh_analytics_views_concurrent(text, text, integer, interval, boolean, interval, interval, boolean) TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.verify_materialized_view_indexes(text, text) TO runbook_reader;
GRANT EXECUTE ON FUNCTION @extschema@.refresh_status() TO runbook_reader;
GRANT EXECUTE ON FUNCTION @extschema@.prune_mv_refresh_log() TO runbook_admin;
GRANT SELECT ON @extschema@.mv_refresh_log, @extschema@.mv_refresh_runs TO runbook_reader;
-- ==== end parallel refresh ====



-- ==== migration lint (issue 19) ====
GRANT EXECUTE ON FUNCTION @extschema@.lint_migration(text, bigint, bigint) TO runbook_reader;
GRANT EXECUTE ON FUNCTION @extschema@.assert_migration_lint(text, bigint, bigint) TO runbook_reader;
GRANT EXECUTE ON FUNCTION @extschema@.check_migration_preconditions(text, bigint, interval) TO runbook_reader;
GRANT EXECUTE ON PROCEDURE @extschema@.run_ddl(text, interval, integer, interval) TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.run_ddl_statement_check(text, interval, integer, interval) TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.run_ddl_blockers(text) TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.run_ddl_log_attempt(text, integer, text, double precision, integer[], text, text) TO runbook_operator;
GRANT SELECT ON @extschema@.ddl_attempt_log TO runbook_operator;
-- ==== end migration lint ====



-- ==== schema correctness (issue 15) ====
-- Checks and reports: runbook_reader. Baselines and expectations: runbook_operator. Accepting
-- findings and retention (which drops data): runbook_admin.
GRANT EXECUTE ON FUNCTION @extschema@.analyze_index_usage(), @extschema@.find_redundant_indexes(),
    @extschema@.find_unused_indexes(bigint, interval), @extschema@.find_missing_fk_indexes(),
    @extschema@.index_build_progress(), @extschema@.verify_migration_success(),
    @extschema@.assert_migration_success(text), @extschema@.verify_migration(text),
    @extschema@.check_query_plan(text, text, double precision), @extschema@.schema_diff(text),
    @extschema@.rollback_ddl(text), @extschema@.validate_security_configuration(),
    @extschema@.analyze_partition_distribution(double precision),
    @extschema@.check_data_integrity(integer, double precision, double precision),
    @extschema@.generate_compliance_report(text, date)
    TO runbook_reader;
GRANT SELECT ON @extschema@.migration_expectations, @extschema@.schema_baselines,
    @extschema@.schema_baseline_objects, @extschema@.accepted_findings, @extschema@.retention_policies
    TO runbook_reader;
GRANT EXECUTE ON FUNCTION @extschema@.schema_baseline(text, boolean), @extschema@.expect_migration(text, jsonb)
    TO runbook_operator;
GRANT INSERT, UPDATE, DELETE ON @extschema@.migration_expectations, @extschema@.schema_baselines,
    @extschema@.schema_baseline_objects TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.accept_finding(text, text, text, timestamptz),
    @extschema@.withdraw_finding(text, text), @extschema@.apply_data_retention_policies(boolean),
    @extschema@.drop_old_partitions(integer, regclass, boolean)
    TO runbook_admin;
GRANT INSERT, UPDATE, DELETE ON @extschema@.accepted_findings, @extschema@.retention_policies TO runbook_admin;
-- ==== end schema correctness ====



-- ==== monitoring (issue 18) ====
-- The monitoring objects (sql/monitoring.sql).
GRANT EXECUTE ON FUNCTION @extschema@.prometheus_alert_rules() TO runbook_reader;
GRANT SELECT ON @extschema@.performance_analytics_live TO runbook_reader;
GRANT EXECUTE ON FUNCTION @extschema@.notify_alert_changes() TO runbook_operator;
GRANT SELECT ON @extschema@.alert_state TO runbook_reader;
-- (What monitoring/queries.yaml and the dashboards read besides these, the security section
-- above grants to runbook_reader.)
-- ==== end monitoring ====
-- ==== end privileges, applied last ====
