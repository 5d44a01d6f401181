-- pg_runbook demo: migration verification, schema baselines and index analysis.
\set ON_ERROR_STOP 0
DROP SCHEMA IF EXISTS demo_migrations CASCADE;
CREATE SCHEMA demo_migrations;
CREATE TABLE demo_migrations."User" (id bigint PRIMARY KEY);
CREATE TABLE demo_migrations."Scan" (
    id bigserial PRIMARY KEY,
    "userId" bigint REFERENCES demo_migrations."User" (id),
    "normalizedInput" text NOT NULL,
    "createdAt" timestamptz NOT NULL DEFAULT now()
);
INSERT INTO demo_migrations."User" SELECT g FROM generate_series(1, 100) g;
INSERT INTO demo_migrations."Scan" ("userId", "normalizedInput")
SELECT 1 + g % 100, 'input ' || (g % 5000) FROM generate_series(1, 20000) g;
CREATE INDEX "Scan_normalizedInput_idx" ON demo_migrations."Scan" ("normalizedInput");
CREATE INDEX "Scan_normalizedInput_createdAt_idx" ON demo_migrations."Scan" ("normalizedInput", "createdAt");
ANALYZE demo_migrations."Scan";

\echo
\echo '== Before the deploy: take a baseline'
SELECT schema_baseline('demo_before', replace => true) AS objects_captured;

\echo
\echo '== Index usage (the runbook''s "Scan" table)'
SELECT indexname, scans, size, is_redundant, redundant_to, recommendation
FROM analyze_index_usage() WHERE schemaname = 'demo_migrations' ORDER BY indexname;

\echo
\echo '== Redundant indexes, with the statement that drops each'
SELECT indexname, covered_by, reason, drop_statement FROM find_redundant_indexes()
WHERE schemaname = 'demo_migrations';

\echo
\echo '== Foreign keys without an index'
SELECT tablename, constraint_name, create_statement FROM find_missing_fk_indexes()
WHERE schemaname = 'demo_migrations';

\echo
\echo '== The migration declares what it must leave behind'
SELECT expect_migration('demo_scan_unique', '{"indexes": ["demo_migrations.\"Scan_normalizedInput_key\""],
                                               "constraints": ["demo_migrations.\"Scan\".\"Scan_userId_fkey\""]}');

\echo
\echo '== The migration: a unique index built concurrently fails on duplicate values'
CREATE UNIQUE INDEX CONCURRENTLY "Scan_normalizedInput_key" ON demo_migrations."Scan" ("normalizedInput");

\echo
\echo '== verify_migration_success(): the invalid index left behind, and the unmet expectation'
SELECT "check", status, object, detail FROM verify_migration_success() WHERE status <> 'PASS';

\echo
\echo '== assert_migration_success() stops a migration file run with ON_ERROR_STOP'
SELECT * FROM assert_migration_success('demo_scan_unique');

\echo
\echo '== Does the query the migration was for use the index?'
SELECT status, round(execution_ms::numeric, 2) AS execution_ms, indexes_used, seq_scan, detail
FROM check_query_plan($$SELECT * FROM demo_migrations."Scan" WHERE "normalizedInput" = 'input 42'$$,
                      expect_index => '"Scan_normalizedInput_createdAt_idx"');

\echo
\echo '== Anything but one SELECT is refused without running'
SELECT * FROM check_query_plan($$WITH d AS (DELETE FROM demo_migrations."Scan" RETURNING *) SELECT count(*) FROM d$$);

\echo
\echo '== What changed since the baseline, and the DDL that rolls it back'
SELECT change, kind, name, current_definition FROM schema_diff('demo_before') WHERE schemaname = 'demo_migrations';
SELECT step, statement FROM rollback_ddl('demo_before');
\echo
\echo '== Run the rollback through psql (gexec), outside a transaction: nothing differs any more'
SELECT statement FROM rollback_ddl('demo_before') ORDER BY step \gexec
SELECT count(*) AS differences_left FROM schema_diff('demo_before');

DELETE FROM migration_expectations WHERE migration = 'demo_scan_unique';
DELETE FROM schema_baselines WHERE label = 'demo_before';
