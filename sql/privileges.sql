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
-- ==== end schema correctness ====



-- ==== monitoring (issue 18) ====
-- ==== end monitoring ====
