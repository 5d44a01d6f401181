-- analyze_index_usage(), find_redundant_indexes(), find_unused_indexes(), find_missing_fk_indexes(),
-- index_build_progress(): a runbook-shaped schema with mixed-case names, partial and expression
-- indexes, in a schema other than public.
CREATE SCHEMA "Shop";
CREATE TABLE "Shop"."User" (id bigint PRIMARY KEY, email text NOT NULL);
CREATE TABLE "Shop"."Scan" (
    id                bigserial PRIMARY KEY,
    "userId"          bigint REFERENCES "Shop"."User" (id),
    "normalizedInput" text NOT NULL,
    "createdAt"       timestamptz NOT NULL DEFAULT '2026-01-01',
    deleted           boolean NOT NULL DEFAULT false
);
-- The runbook's pair: the single-column index is a leading prefix of the two-column one.
CREATE INDEX "Scan_normalizedInput_idx" ON "Shop"."Scan" ("normalizedInput");
CREATE INDEX "Scan_normalizedInput_createdAt_idx" ON "Shop"."Scan" ("normalizedInput", "createdAt");
-- Partial expression indexes: a prefix only under the same predicate.
CREATE INDEX "Scan_lower_live_idx" ON "Shop"."Scan" (lower("normalizedInput")) WHERE NOT deleted;
CREATE INDEX "Scan_lower_created_live_idx" ON "Shop"."Scan" (lower("normalizedInput"), "createdAt") WHERE NOT deleted;
CREATE INDEX "Scan_lower_all_idx" ON "Shop"."Scan" (lower("normalizedInput"));
-- Different sort order or operator class: not redundant.
CREATE INDEX "Scan_normalizedInput_desc_idx" ON "Shop"."Scan" ("normalizedInput" DESC);
CREATE INDEX "Scan_normalizedInput_pattern_idx" ON "Shop"."Scan" ("normalizedInput" text_pattern_ops);
-- An exact duplicate of the primary key's index, and a unique index the longer one cannot replace.
CREATE INDEX "Scan_id_copy" ON "Shop"."Scan" (id);
CREATE UNIQUE INDEX "User_email_key" ON "Shop"."User" (email);
CREATE INDEX "User_email_id_idx" ON "Shop"."User" (email, id);
INSERT INTO "Shop"."User" VALUES (1, 'a@example.com');
INSERT INTO "Shop"."Scan" ("userId", "normalizedInput") VALUES (1, 'x');
ANALYZE "Shop"."Scan", "Shop"."User";

SELECT indexname, is_unique, is_primary, is_valid, is_redundant, redundant_to, recommendation
FROM analyze_index_usage() WHERE schemaname = 'Shop' ORDER BY tablename, indexname;

-- Both forms runbooks use work.
SELECT count(*) <= 20 AS top_20 FROM (SELECT * FROM analyze_index_usage() WHERE scans > 0 ORDER BY scans DESC LIMIT 20) s;
SELECT r FROM (SELECT analyze_index_usage() AS r) s
WHERE (r).schemaname = 'Shop' AND (r).indexname IN ('Scan_pkey', 'Scan_normalizedInput_idx')
ORDER BY (r).indexname;

SELECT tablename, indexname, covered_by, reason, drop_statement
FROM find_redundant_indexes() WHERE schemaname = 'Shop' ORDER BY indexname;

-- Unused: constraint-backing and unique indexes are never listed; the size filter applies.
-- Statistics of this fresh cluster are minutes old, under the default week: use unknown, no
-- drop statement, and the detail says how old they are.
SELECT tablename, indexname, verdict, detail LIKE 'no scans, but statistics cover only % min, less than the 7.0 d required%' AS says_how_old, drop_statement
FROM find_unused_indexes() WHERE schemaname = 'Shop' ORDER BY indexname;
-- With a window the statistics do cover: unused, with the statement.
SELECT tablename, indexname, verdict, detail LIKE 'no scans; statistics %' AS says_since_when, drop_statement
FROM find_unused_indexes(min_stats_age => '0') WHERE schemaname = 'Shop' ORDER BY indexname;
SET pg_runbook.unused_index_min_stats_age = 0;
SELECT indexname, recommendation FROM analyze_index_usage() WHERE indexname = 'Scan_lower_all_idx';
RESET pg_runbook.unused_index_min_stats_age;
SELECT count(*) FROM find_unused_indexes(min_size_bytes => 1000000000, min_stats_age => '0') WHERE schemaname = 'Shop';
-- The only index serving a foreign key, and the replica identity index, are kept whatever their scans.
CREATE INDEX "Scan_userId_idx" ON "Shop"."Scan" ("userId");
CREATE UNIQUE INDEX "Scan_normalizedInput_id_key" ON "Shop"."Scan" ("normalizedInput", id);
ALTER TABLE "Shop"."Scan" REPLICA IDENTITY USING INDEX "Scan_normalizedInput_id_key";
SELECT indexname, recommendation FROM analyze_index_usage()
WHERE indexname IN ('Scan_userId_idx', 'Scan_normalizedInput_id_key') ORDER BY 1;
SELECT count(*) AS listed FROM find_unused_indexes(min_stats_age => '0')
WHERE indexname IN ('Scan_userId_idx', 'Scan_normalizedInput_id_key');
-- A second unscanned index serving the key: one of the two may go, not both (the first by name stays).
CREATE INDEX "Scan_userId_createdAt_idx2" ON "Shop"."Scan" ("userId", "createdAt");
SELECT indexname, verdict FROM find_unused_indexes(min_stats_age => '0')
WHERE indexname IN ('Scan_userId_idx', 'Scan_userId_createdAt_idx2') ORDER BY 1;
DROP INDEX "Shop"."Scan_userId_createdAt_idx2", "Shop"."Scan_userId_idx";
ALTER TABLE "Shop"."Scan" REPLICA IDENTITY DEFAULT;
DROP INDEX "Shop"."Scan_normalizedInput_id_key";

-- "userId" leads no index: suggested, every identifier quoted. An index fixes it.
SELECT * FROM find_missing_fk_indexes() WHERE schemaname = 'Shop';
CREATE INDEX "Scan_userId_createdAt_idx" ON "Shop"."Scan" ("userId", "createdAt");
SELECT count(*) FROM find_missing_fk_indexes() WHERE schemaname = 'Shop';
-- A partial index does not serve the foreign key.
DROP INDEX "Shop"."Scan_userId_createdAt_idx";
CREATE INDEX "Scan_userId_live_idx" ON "Shop"."Scan" ("userId") WHERE NOT deleted;
SELECT constraint_name FROM find_missing_fk_indexes() WHERE schemaname = 'Shop';

-- No build runs now (a running build is shown by the integration test).
SELECT * FROM index_build_progress();

-- Bad input.
SELECT regress.error_of($$SELECT * FROM find_unused_indexes(NULL)$$);
SELECT regress.error_of($$SELECT * FROM find_unused_indexes(-1)$$);
SELECT regress.error_of($$SELECT * FROM find_unused_indexes(0, '-1 day')$$);

-- The extension's own tables are never analysed.
SELECT count(*) FROM analyze_index_usage() WHERE tablename IN ('migration_expectations', 'schema_baselines', 'schema_baseline_objects');

DROP SCHEMA "Shop" CASCADE;
