-- lint_migration(), assert_migration_lint(), check_migration_preconditions() and run_ddl()'s
-- argument checks. The corpus (tests/lint/RULE.sql: a bad form, then a good form) is judged on
-- empty tables, then on the same tables with "App"."Orders" at 1M rows.
CREATE SCHEMA "App";
CREATE TYPE "App".order_state AS ENUM ('new', 'paid');
CREATE TABLE "App".customers (id bigint PRIMARY KEY, email text);
CREATE TABLE "App"."Orders" (id bigint PRIMARY KEY, "userId" bigint, note varchar(20), total numeric(10,2),
  ref text, legacy text, state "App".order_state);
CREATE INDEX "Orders_total_idx" ON "App"."Orders" (total);
CREATE VIEW "App".order_notes AS SELECT id, note FROM "App"."Orders";
CREATE TABLE "App".events (id bigint, at timestamptz NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE "App".events_2026_01 PARTITION OF "App".events FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE "App".events_2026_03 (id bigint, at timestamptz NOT NULL);
VACUUM ANALYZE "App"."Orders", "App".customers, "App".events_2026_01, "App".events_2026_03;

-- The corpus, one file per rule.
CREATE TABLE regress.corpus (rule text PRIMARY KEY, body text);
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/attach_partition.sql`
INSERT INTO regress.corpus VALUES ('attach_partition', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/check_not_valid.sql`
INSERT INTO regress.corpus VALUES ('check_not_valid', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/cluster.sql`
INSERT INTO regress.corpus VALUES ('cluster', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/concurrently_in_transaction.sql`
INSERT INTO regress.corpus VALUES ('concurrently_in_transaction', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/detach_partition_not_concurrent.sql`
INSERT INTO regress.corpus VALUES ('detach_partition_not_concurrent', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/drop_index_not_concurrent.sql`
INSERT INTO regress.corpus VALUES ('drop_index_not_concurrent', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/enum_value_used_in_transaction.sql`
INSERT INTO regress.corpus VALUES ('enum_value_used_in_transaction', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/foreign_key_not_valid.sql`
INSERT INTO regress.corpus VALUES ('foreign_key_not_valid', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/index_not_concurrent.sql`
INSERT INTO regress.corpus VALUES ('index_not_concurrent', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/lock_table.sql`
INSERT INTO regress.corpus VALUES ('lock_table', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/missing_lock_timeout.sql`
INSERT INTO regress.corpus VALUES ('missing_lock_timeout', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/reindex_not_concurrent.sql`
INSERT INTO regress.corpus VALUES ('reindex_not_concurrent', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/set_not_null.sql`
INSERT INTO regress.corpus VALUES ('set_not_null', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/type_change_rewrite.sql`
INSERT INTO regress.corpus VALUES ('type_change_rewrite', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/unique_without_index.sql`
INSERT INTO regress.corpus VALUES ('unique_without_index', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/used_by_view.sql`
INSERT INTO regress.corpus VALUES ('used_by_view', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/vacuum_full.sql`
INSERT INTO regress.corpus VALUES ('vacuum_full', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/validate_in_same_transaction.sql`
INSERT INTO regress.corpus VALUES ('validate_in_same_transaction', :'f');
\set f `cd "$(git rev-parse --show-toplevel)" && cat tests/lint/volatile_default.sql`
INSERT INTO regress.corpus VALUES ('volatile_default', :'f');
-- lint_forms(rule): the rows of the bad form, then of the good form.
CREATE FUNCTION regress.lint_forms(r text) RETURNS TABLE (form text, statement int, rule text, status text,
  lock_mode text, lock_on text, table_work text, safe_form text) LANGUAGE sql AS $$
  SELECT f.form, l.statement, l.rule, l.status, l.lock_mode, l.lock_on, l.table_work, l.safe_form
  FROM regress.corpus c,
       LATERAL (VALUES (1, 'bad', split_part(c.body, '-- good', 1)), (2, 'good', split_part(c.body, '-- good', 2))) f(n, form, sql),
       LATERAL lint_migration(f.sql) WITH ORDINALITY l
  WHERE c.rule = r ORDER BY f.n, l.ordinality $$;

-- On empty tables: every statement PASSes except those wrong whatever the size.
CREATE TABLE regress.on_empty AS
  SELECT c.rule AS file, l.* FROM regress.corpus c, regress.lint_forms(c.rule) l;
SELECT file, form, statement, rule, status FROM regress.on_empty WHERE status <> 'PASS' ORDER BY file, form, statement, rule;

-- The same tables, filled: "App"."Orders" at 1M rows, a partition to attach at 20,000, the
-- partitioned "App".events at 30,000.
INSERT INTO "App".customers SELECT g, 'c' || g FROM generate_series(1, 1000) g;
INSERT INTO "App"."Orders" SELECT g, g % 1000 + 1, 'n' || (g % 10), g % 500, 'r' || g, NULL, 'new'
FROM generate_series(1, 1000000) g;
INSERT INTO "App".events_2026_03 SELECT g, '2026-03-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 20000) g;
INSERT INTO "App".events_2026_01 SELECT g, '2026-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, 30000) g;
VACUUM ANALYZE "App"."Orders", "App".customers, "App".events_2026_03, "App".events_2026_01;
SELECT rule, (SELECT string_agg(format('%s %s %s %s %s %s', form, statement, l.rule, status, coalesce(lock_mode, '-'), coalesce(table_work, '-'))
                                 || coalesce(E'\n    safe: ' || safe_form, ''), E'\n')
              FROM regress.lint_forms(c.rule) l) AS findings
FROM regress.corpus c ORDER BY rule;

-- Side by side: what the size changed.
SELECT e.file, e.form, e.statement, e.rule, e.status AS on_empty, l.status AS on_1m_rows
FROM regress.on_empty e
JOIN LATERAL (SELECT * FROM regress.lint_forms(e.file)) l
  ON l.form = e.form AND l.statement = e.statement AND l.rule = e.rule
WHERE e.status <> l.status ORDER BY 1, 2, 3, 4;

-- On the large table every bad form has a WARN or FAIL and every good form passes.
SELECT c.rule AS bad_form_without_finding FROM regress.corpus c
WHERE NOT EXISTS (SELECT 1 FROM regress.lint_forms(c.rule) l WHERE l.form = 'bad' AND l.status <> 'PASS');
SELECT c.rule AS good_form_not_passing, l.rule, l.status FROM regress.corpus c, regress.lint_forms(c.rule) l
WHERE l.form = 'good' AND l.status <> 'PASS';

-- Every column, for one statement on the large table (sizes, estimate, lock hold).
SELECT * FROM lint_migration('CREATE INDEX ON "App"."Orders" (ref)');
SET pg_runbook.lint_fail_rows = 2000000;
SELECT status, detail FROM lint_migration('CREATE INDEX ON "App"."Orders" (ref)');
RESET pg_runbook.lint_fail_rows;
-- The same thresholds as arguments, for one call; a negative one is refused.
SELECT status FROM lint_migration('CREATE INDEX ON "App"."Orders" (ref)', warn_rows => 2000000, fail_rows => 3000000);
SELECT regress.error_of($$SELECT * FROM lint_migration('VACUUM', fail_rows => -1)$$);

-- Names resolve through the caller's search_path, and print as the catalog spells them.
SET search_path = "App", public;
SELECT statement, rule, status, lock_on FROM lint_migration('SET lock_timeout = 0; ALTER TABLE "Orders" ADD COLUMN x int');
RESET search_path;
-- An unnamed constraint's safe form uses the name PostgreSQL will give it.
SELECT safe_form FROM lint_migration('ALTER TABLE "App"."Orders" ADD FOREIGN KEY ("userId") REFERENCES "App".customers')
WHERE rule = 'foreign_key_not_valid';
-- A partitioned table: its size and rows are its partitions' (30,000 rows in events_2026_01);
-- CONCURRENTLY is not possible on it, so no safe form. An exclusion constraint has no
-- USING INDEX form either.
SELECT rule, status, lock_on, estimated_rows, safe_form IS NULL AS no_safe_form, detail
FROM lint_migration($$SET lock_timeout = '1s';
  CREATE INDEX ON "App".events (at);
  ALTER TABLE "App".customers ADD CONSTRAINT no_overlap EXCLUDE USING btree (email WITH =)$$)
WHERE rule <> 'missing_lock_timeout';
-- A table neither in the catalog nor created earlier; a table the migration creates.
SELECT statement, rule, status, lock_on, detail FROM lint_migration($$
  CREATE INDEX ON no_such_table (id);
  CREATE TABLE "App".fresh (id int);
  CREATE INDEX ON "App".fresh (id);
  ALTER TABLE "App".fresh ADD COLUMN v bigserial$$);
-- Defaults and types the parser accepts but the catalog does not know.
SELECT rule, status, detail FROM lint_migration($$
  ALTER TABLE "App"."Orders" ADD COLUMN y int DEFAULT no_such_function();
  ALTER TABLE "App"."Orders" ALTER COLUMN note TYPE no_such_type$$) WHERE rule <> 'missing_lock_timeout';

-- Odd but valid trees: a whole-row NOT NULL check, a lock_timeout of 0 (wait for ever), RESET.
SELECT statement, rule, status FROM lint_migration($$
  ALTER TABLE "App".customers ADD CONSTRAINT whole CHECK (customers.* IS NOT NULL) NOT VALID;
  SET lock_timeout = 0;
  ALTER TABLE "App".customers ADD COLUMN z int;
  SET lock_timeout = '1s';
  RESET lock_timeout;
  ALTER TABLE "App".customers ADD COLUMN z2 int$$) WHERE rule = 'missing_lock_timeout';
-- A statement the parser refuses: PostgreSQL's own message.
SELECT statement, rule, status, detail FROM lint_migration('ALTER TABLE "App"."Orders" ADD COLUMN;');

-- assert_migration_lint raises P0004 naming every FAIL, and returns the rows when there is none.
SELECT regress.error_of($$SELECT * FROM assert_migration_lint('VACUUM FULL "App"."Orders"; CREATE INDEX ON "App"."Orders" (ref)')$$);
SELECT count(*) AS rows FROM assert_migration_lint('CREATE INDEX CONCURRENTLY ON "App"."Orders" (ref)');
SELECT regress.error_of($$SELECT * FROM lint_migration(NULL)$$);

-- check_migration_preconditions: duplicates, NULLs, orphans, CHECK violations, bounded by max_rows.
INSERT INTO "App".customers VALUES (1001, 'c1'), (1002, NULL);
UPDATE "App"."Orders" SET "userId" = NULL WHERE id <= 3;
UPDATE "App"."Orders" SET "userId" = 5000 WHERE id BETWEEN 4 AND 5;
INSERT INTO "App".events_2026_03 VALUES (0, '2026-04-02'), (-1, '2026-02-28 23:59:59');
CREATE TABLE "App".regions (code text, n int) PARTITION BY LIST (code);
CREATE TABLE "App"."Regions EU" (code text, n int);
INSERT INTO "App"."Regions EU" VALUES ('de', 1), ('fr', 2), ('us', 3), (NULL, 4);
SELECT * FROM check_migration_preconditions($$
  CREATE UNIQUE INDEX CONCURRENTLY customers_email_key ON "App".customers (email);
  ALTER TABLE "App"."Orders" ALTER COLUMN "userId" SET NOT NULL;
  ALTER TABLE "App"."Orders" ADD CONSTRAINT "Orders_userId_fkey" FOREIGN KEY ("userId") REFERENCES "App".customers NOT VALID;
  ALTER TABLE "App"."Orders" ADD CONSTRAINT total_small CHECK (total < 400);
  ALTER TABLE "App"."Orders" ADD CONSTRAINT ref_set CHECK (ref IS NOT NULL);
  ALTER TABLE "App".customers ADD PRIMARY KEY (email);
  ALTER TABLE "App".customers ADD CONSTRAINT nope CHECK (no_such_column > 0);
  ALTER TABLE "App".events ATTACH PARTITION "App".events_2026_03 FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
  ALTER TABLE "App".regions ATTACH PARTITION "App"."Regions EU" FOR VALUES IN ('de', 'fr');
  ALTER TABLE "App".regions ATTACH PARTITION "App"."Regions EU" FOR VALUES IN ('de', 'fr', 'us', NULL);
  ALTER TABLE "App".events ATTACH PARTITION "App".events_2026_03 DEFAULT;
  CREATE TABLE "App".later (id int);
  CREATE UNIQUE INDEX ON "App".later (id)$$, max_rows => 50);
SELECT regress.error_of($$SELECT * FROM check_migration_preconditions('SELEC 1')$$);
SELECT regress.error_of($$SELECT * FROM check_migration_preconditions('SELECT 1', max_rows => 0)$$);
SELECT regress.error_of($$SELECT * FROM check_migration_preconditions('SELECT 1', timeout => '0')$$);

-- run_ddl refuses what it cannot run, before running anything (the retries are tested in
-- tests/integration/test_run_ddl.sh, which needs a second session).
SELECT regress.error_of($$CALL run_ddl('SELECT 1')$$);
SELECT regress.error_of($$CALL run_ddl('ALTER TABLE "App".customers ADD a int; ALTER TABLE "App".customers ADD b int')$$);
SELECT regress.error_of($$CALL run_ddl('CREATE INDEX CONCURRENTLY ON "App".customers (email)')$$);
SELECT regress.error_of($$CALL run_ddl('ALTER TABLE "App".customers ADD a int', lock_timeout => '0')$$);
SELECT regress.error_of($$CALL run_ddl('ALTER TABLE "App".customers ADD a int', retries => -1)$$);
SELECT regress.error_of($$CALL run_ddl(NULL)$$);
-- A valid call inside a transaction block (here error_of's): it could not COMMIT, so it refuses.
SELECT regress.error_of($$CALL run_ddl('ALTER TABLE "App".customers ADD a int')$$);
SELECT count(*) AS attempts_logged FROM ddl_attempt_log;

-- Who may call what.
SELECT p.proname, pg_catalog.has_function_privilege('runbook_reader', p.oid, 'EXECUTE') AS reader,
       pg_catalog.has_function_privilege('runbook_operator', p.oid, 'EXECUTE') AS operator,
       pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE') AS public
FROM pg_catalog.pg_proc p
WHERE p.proname IN ('lint_migration', 'assert_migration_lint', 'check_migration_preconditions', 'run_ddl',
                    'run_ddl_statement_check', 'run_ddl_blockers', 'run_ddl_log_attempt')
ORDER BY 1;

-- The safe forms run as printed (psql's \gexec sends each as a top-level statement).
UPDATE "App"."Orders" SET "userId" = 1 WHERE "userId" IS NULL OR "userId" = 5000;
SELECT safe_form FROM regress.lint_forms('set_not_null') WHERE form = 'bad' AND safe_form IS NOT NULL \gexec
SELECT safe_form FROM regress.lint_forms('foreign_key_not_valid') WHERE form = 'bad' AND rule = 'foreign_key_not_valid' \gexec
SELECT safe_form FROM regress.lint_forms('volatile_default') WHERE form = 'bad' AND rule = 'volatile_default' \gexec
SELECT safe_form FROM regress.lint_forms('index_not_concurrent') WHERE form = 'bad' \gexec
SELECT safe_form FROM regress.lint_forms('reindex_not_concurrent') WHERE form = 'bad' AND statement = 1 \gexec
SELECT safe_form FROM regress.lint_forms('drop_index_not_concurrent') WHERE form = 'bad' AND rule = 'drop_index_not_concurrent' \gexec
SELECT a.attname, a.attnotnull FROM pg_catalog.pg_attribute a
WHERE a.attrelid = '"App"."Orders"'::regclass AND a.attname IN ('userId', 'createdAt') ORDER BY 1;
SELECT conname, convalidated FROM pg_catalog.pg_constraint WHERE conrelid = '"App"."Orders"'::regclass AND contype = 'f';
SELECT indexrelid::regclass AS index FROM pg_catalog.pg_index WHERE indrelid = '"App"."Orders"'::regclass ORDER BY 1;

DROP SCHEMA "App" CASCADE;
DROP TABLE regress.corpus, regress.on_empty;
DROP FUNCTION regress.lint_forms(text);
