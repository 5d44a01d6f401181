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
-- ==== end schema correctness ====



-- ==== monitoring (issue 18) ====
-- ==== end monitoring ====
