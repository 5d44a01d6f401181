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
-- ==== end parallel refresh ====



-- ==== migration lint (issue 19) ====
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
-- ==== end monitoring ====
