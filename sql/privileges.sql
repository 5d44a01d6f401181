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
-- ==== end security ====



-- ==== worker (issue 16) ====
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
-- ==== end migration lint ====



-- ==== schema correctness (issue 15) ====
-- ==== end schema correctness ====



-- ==== monitoring (issue 18) ====
-- ==== end monitoring ====
