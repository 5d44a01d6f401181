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
-- ==== end monitoring ====
