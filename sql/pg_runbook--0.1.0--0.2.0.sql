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
-- ==== end migration lint ====



-- ==== schema correctness (issue 15) ====
-- ==== end schema correctness ====



-- ==== monitoring (issue 18) ====
-- ==== end monitoring ====
