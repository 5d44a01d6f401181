-- The privilege model (docs/security.md), as the catalog records it: which of the extension's
-- routines and tables each role may use. A function added without a decision shows up here.
CREATE ROLE regress_plain;
CREATE ROLE regress_reader IN ROLE runbook_reader;
CREATE ROLE regress_operator IN ROLE runbook_operator;
CREATE ROLE regress_admin IN ROLE runbook_admin;

CREATE TEMP VIEW own_routines AS
SELECT p.oid, p.proname::text AS name
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_runbook';

-- Each routine and the least role that may call it: PUBLIC only for pure computations over
-- their arguments; reader for checks and reports; operator for what acts; admin for what
-- configures or deletes application data; superuser for trigger functions.
SELECT name,
       CASE WHEN has_function_privilege('regress_plain', oid, 'EXECUTE') THEN 'PUBLIC'
            WHEN has_function_privilege('regress_reader', oid, 'EXECUTE') THEN 'runbook_reader'
            WHEN has_function_privilege('regress_operator', oid, 'EXECUTE') THEN 'runbook_operator'
            WHEN has_function_privilege('regress_admin', oid, 'EXECUTE') THEN 'runbook_admin'
            ELSE 'superuser' END AS least_role
FROM own_routines
ORDER BY least_role, name;

-- Tables: what each role may do with each (r = SELECT, a = INSERT, w = UPDATE, d = DELETE).
SELECT c.relname,
       concat_ws('', CASE WHEN has_table_privilege(r, c.oid, 'SELECT') THEN 'r' END,
                     CASE WHEN has_table_privilege(r, c.oid, 'INSERT') THEN 'a' END,
                     CASE WHEN has_table_privilege(r, c.oid, 'UPDATE') THEN 'w' END,
                     CASE WHEN has_table_privilege(r, c.oid, 'DELETE') THEN 'd' END) AS rights,
       r AS role
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_runbook'
CROSS JOIN (VALUES ('regress_plain'), ('regress_reader'), ('regress_operator'), ('regress_admin')) v(r)
WHERE c.relkind IN ('r', 'v', 'p')
  AND (has_table_privilege(r, c.oid, 'SELECT') OR has_table_privilege(r, c.oid, 'INSERT')
       OR has_table_privilege(r, c.oid, 'UPDATE') OR has_table_privilege(r, c.oid, 'DELETE'))
ORDER BY c.relname, r;

-- A plain role is refused (42501) by what it was not granted, before anything runs.
SET ROLE regress_plain;
SELECT regress.error_of($$SELECT * FROM preflight_checks()$$);
SELECT regress.error_of($$SELECT cache_get('k')$$);
SELECT regress.error_of($$SELECT * FROM query_cache$$);
SELECT sketch_count(sketch) AS pure_functions_work FROM (SELECT request_sketch(d, 200, false) AS sketch FROM generate_series(1, 3) d) s;
RESET ROLE;

-- A reader reads, and may not act.
SET ROLE regress_reader;
SELECT count(*) > 0 AS reader_runs_checks FROM preflight_checks();
SELECT regress.error_of($$SELECT cache_put('k', '1', '1 hour')$$);
SELECT regress.error_of($$SELECT record_request('/x', 5, 200)$$);
SELECT regress.error_of($$UPDATE rollback_triggers SET enabled = enabled$$);
RESET ROLE;

-- Settings that delete what every role relies on are a superuser's, not a role's.
SET ROLE regress_operator;
SELECT regress.error_of($$SET pg_runbook.refresh_log_retention = '1s'$$);
RESET ROLE;

DROP VIEW own_routines;
DROP ROLE regress_plain, regress_reader, regress_operator, regress_admin;
