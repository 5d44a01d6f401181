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
-- ==== end privileges ====



-- ==== worker (issue 16) ====
CREATE FUNCTION @extschema@."drain_cache_invalidation_batch"("batch_size" INT, "after_id" bigint)
RETURNS TABLE ("events" bigint, "next_after_id" bigint)
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
        SELECT b.events, b.next_after_id INTO step
        FROM @extschema@.drain_cache_invalidation_batch(batch_size, after_id) AS b;
        events_drained := events_drained OPERATOR(pg_catalog.+) step.events;
        COMMIT;
        EXIT WHEN step.next_after_id IS NULL OR pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) deadline;
        after_id := step.next_after_id;
    END LOOP;
END $$;
COMMENT ON PROCEDURE @extschema@.drain_cache_invalidation_queue_batches(integer, integer, bigint) IS
    'Drains the invalidation queue committing after every batch (CALL it outside a transaction block); returns the events drained. For runbook_operator';
COMMENT ON FUNCTION @extschema@.drain_cache_invalidation_batch(integer, bigint) IS
    'One batch of the invalidation drain (the procedure drain_cache_invalidation_queue_batches loops over it): events finished and the id the next batch starts after, NULL when done. For runbook_operator';
GRANT EXECUTE ON FUNCTION @extschema@.drain_cache_invalidation_batch(integer, bigint) TO runbook_operator;
GRANT EXECUTE ON PROCEDURE @extschema@.drain_cache_invalidation_queue_batches(integer, integer, bigint) TO runbook_operator;
COMMENT ON FUNCTION @extschema@.worker_status() IS
    'pg_runbook background workers, one row per database served or asked for: pid (NULL when none runs), database, state (starting, waiting for CREATE EXTENSION, idle, draining, rolling up, cleaning up, backing off, unserved, disabled, standby, stopped), last drain, events drained, last error or reason, naptime';
-- ==== end worker ====



-- ==== parallel refresh (issue 17) ====
-- ==== end parallel refresh ====



-- ==== migration lint (issue 19) ====
-- ==== end migration lint ====



-- ==== schema correctness (issue 15) ====
-- ==== end schema correctness ====



-- ==== monitoring (issue 18) ====
-- ==== end monitoring ====
