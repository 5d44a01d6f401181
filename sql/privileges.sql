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
GRANT EXECUTE ON FUNCTION @extschema@.drain_cache_invalidation_batch(integer, bigint) TO runbook_operator;
GRANT EXECUTE ON PROCEDURE @extschema@.drain_cache_invalidation_queue_batches(integer, integer, bigint) TO runbook_operator;
-- ==== end worker ====



-- ==== parallel refresh (issue 17) ====
-- ==== end parallel refresh ====



-- ==== migration lint (issue 19) ====
-- ==== end migration lint ====



-- ==== schema correctness (issue 15) ====
-- ==== end schema correctness ====



-- ==== monitoring (issue 18) ====
-- ==== end monitoring ====
