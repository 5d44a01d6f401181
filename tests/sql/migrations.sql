-- verify_migration_success(), assert_migration_success(), expect_migration(), verify_migration(),
-- check_query_plan(), schema_baseline(), schema_diff(), rollback_ddl().
-- (A failed CREATE INDEX CONCURRENTLY cannot run in this file; tests/integration covers it.)
CREATE SCHEMA "Deploy";
CREATE TABLE "Deploy"."Scan" (id bigint PRIMARY KEY, "normalizedInput" text NOT NULL, "createdAt" timestamptz);
CREATE TABLE "Deploy"."Note" (id bigint PRIMARY KEY, "scanId" bigint);
INSERT INTO "Deploy"."Scan" SELECT g, 'input ' || g, '2026-01-01'::timestamptz + g * interval '1 minute'
FROM generate_series(1, 2000) g;
CREATE INDEX "Scan_normalizedInput_idx" ON "Deploy"."Scan" ("normalizedInput");
ANALYZE "Deploy"."Scan";

-- Nothing left behind.
SELECT * FROM verify_migration_success();
SELECT count(*) AS rows FROM assert_migration_success();

-- A NOT VALID constraint is a warning, not a failure.
ALTER TABLE "Deploy"."Note" ADD CONSTRAINT "Note_scan_fk" FOREIGN KEY ("scanId") REFERENCES "Deploy"."Scan" (id) NOT VALID;
SELECT * FROM verify_migration_success() WHERE status <> 'PASS';

-- Expectations: what final_punchlist must leave behind.
SELECT expect_migration('final_punchlist', $${
  "indexes": ["\"Deploy\".\"Scan_normalizedInput_idx\"", "\"Deploy\".\"Scan_createdAt_idx\""],
  "constraints": ["\"Deploy\".\"Note\".\"Note_scan_fk\"", "\"Deploy\".\"Scan\".\"Scan_pkey\""],
  "tables": ["\"Deploy\".\"Note\""],
  "materialized_views": ["\"Deploy\".scan_counts"],
  "functions": ["pg_catalog.lower(text)", "\"Deploy\".no_such_function"]
}$$);
SELECT * FROM verify_migration('final_punchlist');
SELECT regress.error_of($$SELECT * FROM assert_migration_success('final_punchlist')$$);
-- The migration's missing parts arrive; the expectation is met.
CREATE INDEX "Scan_createdAt_idx" ON "Deploy"."Scan" ("createdAt");
ALTER TABLE "Deploy"."Note" VALIDATE CONSTRAINT "Note_scan_fk";
CREATE MATERIALIZED VIEW "Deploy".scan_counts AS SELECT count(*) AS n FROM "Deploy"."Scan";
CREATE FUNCTION "Deploy".no_such_function() RETURNS int LANGUAGE sql AS 'SELECT 1';
SELECT status, count(*) FROM verify_migration('final_punchlist') GROUP BY status;
SELECT count(*) AS rows FROM assert_migration_success('final_punchlist');
-- Registering again replaces the expectation.
SELECT expect_migration('final_punchlist', '{"tables": ["\"Deploy\".\"Scan\""]}');
SELECT * FROM verify_migration('final_punchlist');
-- verify_migration_success() includes every registered migration.
SELECT "check", status, object FROM verify_migration_success() WHERE "check" LIKE 'expected%';

-- Bad input: 22023 or 42704 naming it, and nothing registered.
SELECT regress.error_of($$SELECT * FROM verify_migration('no_such_migration')$$);
SELECT regress.error_of($$SELECT * FROM assert_migration_success('no_such_migration')$$);
SELECT regress.error_of($$SELECT * FROM verify_migration(NULL)$$);
SELECT regress.error_of($$SELECT expect_migration(NULL, '{"tables": ["t"]}')$$);
SELECT regress.error_of($$SELECT expect_migration('', '{"tables": ["t"]}')$$);
SELECT regress.error_of($$SELECT expect_migration('bad', NULL)$$);
SELECT regress.error_of($$SELECT expect_migration('bad', '[]')$$);
SELECT regress.error_of($$SELECT expect_migration('bad', '{}')$$);
SELECT regress.error_of($$SELECT expect_migration('bad', '{"index": ["a"]}')$$);
SELECT regress.error_of($$SELECT expect_migration('bad', '{"indexes": "a"}')$$);
SELECT regress.error_of($$SELECT expect_migration('bad', '{"indexes": [42]}')$$);
SELECT regress.error_of($$SELECT expect_migration('bad', '{"indexes": ["\"unterminated"]}')$$);
SELECT regress.error_of($$SELECT expect_migration('bad', '{"constraints": ["Scan_pkey"]}')$$);
SELECT migration FROM migration_expectations ORDER BY 1;

-- check_query_plan: runs one read-only query under EXPLAIN ANALYZE.
SELECT status, indexes_used, seq_scan, seq_scan_tables, detail
FROM check_query_plan($$SELECT * FROM "Deploy"."Scan" WHERE "normalizedInput" = 'input 7'$$,
                      expect_index => '"Deploy"."Scan_normalizedInput_idx"');
SELECT status, indexes_used, seq_scan, seq_scan_tables, detail
FROM check_query_plan($$SELECT count(*) FROM "Deploy"."Scan" WHERE "normalizedInput" LIKE '%7'$$,
                      expect_index => '"Scan_normalizedInput_idx"');
SELECT status, detail FROM check_query_plan('WITH s AS (SELECT 1 AS x) SELECT x FROM s', max_ms => 60000);
SELECT planning_ms >= 0 AND execution_ms >= 0 AS timed FROM check_query_plan('SELECT 1');
-- Refused (22023) without being run: the rows are all still there, and no table was created.
CREATE TABLE "Deploy".victim AS SELECT g AS id FROM generate_series(1, 3) g;
SELECT regress.error_of($$SELECT * FROM check_query_plan('DELETE FROM "Deploy".victim')$$);
SELECT regress.error_of($$SELECT * FROM check_query_plan('WITH d AS (DELETE FROM "Deploy".victim RETURNING *) SELECT * FROM d')$$);
SELECT regress.error_of($$SELECT * FROM check_query_plan('SELECT 1; DELETE FROM "Deploy".victim')$$);
SELECT regress.error_of($$SELECT * FROM check_query_plan('SELECT * INTO "Deploy".copied FROM "Deploy".victim')$$);
SELECT regress.error_of($$SELECT * FROM check_query_plan('SELECT * FROM "Deploy".victim FOR UPDATE')$$);
SELECT regress.error_of($$SELECT * FROM check_query_plan('SELECT * FROM (SELECT * FROM "Deploy".victim FOR SHARE) s')$$);
SELECT regress.error_of($$SELECT * FROM check_query_plan('SELECT * FROM "Deploy".victim WHERE id IN (SELECT id FROM "Deploy".victim FOR NO KEY UPDATE)')$$);
SELECT regress.error_of($$SELECT * FROM check_query_plan('TRUNCATE "Deploy".victim')$$);
SELECT regress.error_of($$SELECT * FROM check_query_plan('EXPLAIN ANALYZE DELETE FROM "Deploy".victim')$$);
SELECT regress.error_of($$SELECT * FROM check_query_plan('')$$);
SELECT regress.error_of($$SELECT * FROM check_query_plan(NULL)$$);
SELECT regress.error_of($$SELECT * FROM check_query_plan('SELECT 1', max_ms => -1)$$);
SELECT regress.error_of($$SELECT * FROM check_query_plan('SELECT 1', expect_index => 'a.b.c.d')$$);
-- A SELECT that would write through a function runs read-only, so the write fails.
CREATE FUNCTION "Deploy".sneaky() RETURNS int LANGUAGE sql AS 'DELETE FROM "Deploy".victim RETURNING 1';
SELECT regress.error_of($$SELECT * FROM check_query_plan('SELECT "Deploy".sneaky()')$$);
SELECT count(*) AS victims_left, to_regclass('"Deploy".copied') AS copied FROM "Deploy".victim;
-- ... and the caller's transaction is writable again afterwards.
INSERT INTO "Deploy".victim VALUES (4);
DROP TABLE "Deploy".victim;
DROP FUNCTION "Deploy".sneaky();

-- Baselines: take one, change indexes and constraints, see the diff and the rollback DDL.
SELECT schema_baseline('before_deploy') > 0 AS captured;
SELECT * FROM schema_diff('before_deploy');
CREATE INDEX "Scan_recent_idx" ON "Deploy"."Scan" ("createdAt") WHERE "createdAt" > '2026-01-01';
DROP INDEX "Deploy"."Scan_normalizedInput_idx";
ALTER TABLE "Deploy"."Note" DROP CONSTRAINT "Note_scan_fk";
ALTER TABLE "Deploy"."Scan" ADD CONSTRAINT "Scan_input_not_blank" CHECK ("normalizedInput" <> '') NOT VALID;
SELECT change, kind, schemaname, tablename, name, baseline_definition, current_definition
FROM schema_diff('before_deploy') WHERE schemaname = 'Deploy';
SELECT * FROM rollback_ddl('before_deploy');
-- Taking a label again needs replace => true.
SELECT regress.error_of($$SELECT schema_baseline('before_deploy')$$);
SELECT schema_baseline('before_deploy', replace => true) > 0 AS retaken;
SELECT count(*) FROM schema_diff('before_deploy');
SELECT count(*) FROM rollback_ddl('before_deploy');
-- Bad input.
SELECT regress.error_of($$SELECT * FROM schema_diff('no_such_label')$$);
SELECT regress.error_of($$SELECT * FROM rollback_ddl('no_such_label')$$);
SELECT regress.error_of($$SELECT * FROM schema_diff(NULL)$$);
SELECT regress.error_of($$SELECT schema_baseline(NULL)$$);
SELECT regress.error_of($$SELECT schema_baseline('  ')$$);
SELECT regress.error_of($$SELECT schema_baseline('x', replace => NULL)$$);
SELECT label FROM schema_baselines ORDER BY 1;

DELETE FROM schema_baselines;
DELETE FROM migration_expectations;
DROP SCHEMA "Deploy" CASCADE;
