-- The privilege model's three roles (docs/security.md). Roles belong to the cluster, not to one
-- database, so they are created only when missing and survive DROP EXTENSION; they cannot log in.
-- Names may not start with "pg_" (reserved by PostgreSQL), hence runbook_*.
--   runbook_reader    checks and reports: read-only functions, the reporting tables
--   runbook_operator  also acts: refresh, drain, record and roll up metrics, use the query cache
--   runbook_admin     also configures: SLO, rollback and retention rules, retention runs
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
