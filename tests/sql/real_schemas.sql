-- Issue 15: generated DDL, advice and verdicts that hold for any schema. Each block is one of
-- the issue's cases, its repro as the test. Not in one transaction: advice with CONCURRENTLY is
-- run with \gexec, statement by statement, as a DBA would run it.

-- ---- A rollback re-creates a foreign key against the table it referenced -------------------
CREATE SCHEMA app;
CREATE TABLE app.b (bb int PRIMARY KEY);
CREATE TABLE public.b (bb int PRIMARY KEY);
CREATE TABLE app.t2 (bb int CONSTRAINT t2_bb_fkey REFERENCES app.b);
SET search_path = app, public;
SELECT schema_baseline('sp') > 0 AS taken;
RESET search_path;
-- Stored schema-qualified, whatever the search_path it was taken under.
SELECT definition FROM schema_baseline_objects WHERE label = 'sp' AND name = 't2_bb_fkey';
-- Compared under another search_path: no change that did not happen.
SELECT count(*) AS changes FROM schema_diff('sp') WHERE schemaname = 'app';
ALTER TABLE app.t2 DROP CONSTRAINT t2_bb_fkey;
SELECT step, statement FROM rollback_ddl('sp') ORDER BY step;
SELECT statement FROM rollback_ddl('sp') ORDER BY step \gexec
SELECT conname, confrelid = 'app.b'::regclass AS references_app_b FROM pg_constraint WHERE conname = 't2_bb_fkey';

-- ---- Partitioned indexes: re-created on the parent; a detached partition keeps its own -----
CREATE TABLE app."Ev" (id int, at date NOT NULL, x int) PARTITION BY RANGE (at);
CREATE TABLE app."Ev_2024" PARTITION OF app."Ev" FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE app."Ev_2025" PARTITION OF app."Ev" FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE INDEX "Ev_x_idx" ON app."Ev" (x);
SELECT schema_baseline('parts') > 0 AS taken;
DROP INDEX app."Ev_x_idx";
SELECT step, statement FROM rollback_ddl('parts') ORDER BY step;
SELECT statement FROM rollback_ddl('parts') ORDER BY step \gexec
-- The parent's index is valid and each partition has its own attached.
SELECT i.indisvalid, (SELECT count(*) FROM pg_inherits h WHERE h.inhparent = i.indexrelid) AS partitions_indexed
FROM pg_index i WHERE i.indexrelid = 'app."Ev_x_idx"'::regclass;
SELECT "check", status, object FROM verify_migration_success() WHERE "check" = 'invalid_index';
SELECT count(*) AS left_to_roll_back FROM rollback_ddl('parts');
-- Detached after the baseline: the partition's index is its own now, and the rollback keeps it.
ALTER TABLE app."Ev" DETACH PARTITION app."Ev_2024";
SELECT count(*) AS statements FROM rollback_ddl('parts');
SELECT count(*) AS changes FROM schema_diff('parts') WHERE schemaname = 'app';
SELECT indexname FROM pg_indexes WHERE tablename = 'Ev_2024';

-- ---- Advice that works when run -----------------------------------------------------------
-- An index made ON ONLY the parent, one partition with a matching index not yet attached, one
-- with none; and a primary key added with ALTER TABLE ONLY (pg_dump's way).
CREATE TABLE app."Ord" (id int NOT NULL, at date NOT NULL, "userId" int) PARTITION BY RANGE (at);
CREATE TABLE app."Ord_a" PARTITION OF app."Ord" FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE app."Ord_b" PARTITION OF app."Ord" FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE INDEX "Ord_userId_idx" ON ONLY app."Ord" ("userId");
CREATE INDEX "Ord_a_userId_idx" ON app."Ord_a" ("userId");
ALTER TABLE ONLY app."Ord" ADD CONSTRAINT "Ord_pkey" PRIMARY KEY (id, at);
SELECT "check", status, object, detail FROM verify_migration_success()
WHERE "check" = 'invalid_index' ORDER BY object;
-- Each statement, run as printed.
SELECT s FROM verify_migration_success() v,
     regexp_split_to_table(substring(v.detail FROM 'run: (.*)$'), '; ') s
WHERE v."check" = 'invalid_index' AND v.status = 'FAIL' ORDER BY v.object \gexec
SELECT "check", status, object FROM verify_migration_success() WHERE "check" = 'invalid_index';
SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relname IN ('Ord_userId_idx', 'Ord_pkey') ORDER BY 1;

-- ---- Names as the catalog spells them -----------------------------------------------------
CREATE TABLE app."Scan" (id int PRIMARY KEY, dedupe text, lookup text);
CREATE INDEX "Scan_dedupe_lookup_idx" ON app."Scan" (dedupe, lookup);
CREATE FUNCTION app."Touch_Scan"(int) RETURNS int LANGUAGE sql SET search_path = pg_catalog AS 'SELECT $1';
INSERT INTO app."Scan" SELECT g, 'd' || g, 'l' || g FROM generate_series(1, 2000) g;
ANALYZE app."Scan";
SELECT expect_migration('prisma_names', $${
  "indexes": ["app.Scan_dedupe_lookup_idx", "Scan_dedupe_lookup_idx", "app.Scan_dedupe_lookup"],
  "constraints": ["app.Scan.Scan_pkey", "app.Scan.Scan_pky"],
  "tables": ["app.Scan", "app.Scna", "app.\"Scan\""]
}$$);
SELECT "check", status, object, detail FROM verify_migration('prisma_names');
SELECT expect_migration('prisma_functions',
  '{"functions": ["app.Touch_Scan", "app.touch_scn", "app.Touch_Scan(int)", "app.Touch_Scan(text)"]}');
SELECT "check", status, object, detail FROM verify_migration('prisma_functions');
SELECT status, indexes_used, detail
FROM check_query_plan($$SELECT * FROM app."Scan" WHERE dedupe = 'd7' AND lookup = 'l7'$$,
                      expect_index => 'Scan_dedupe_lookup_idx');
SELECT status, detail
FROM check_query_plan($$SELECT * FROM app."Scan" WHERE dedupe = 'd7'$$,
                      expect_index => 'app.scan_dedupe_lookup_idx');
-- On a partitioned table the plan scans the partitions' copies of the expected index.
SET enable_seqscan = off;
SELECT status, detail FROM check_query_plan($$SELECT * FROM app."Ev" WHERE x = 3$$, expect_index => 'app.Ev_x_idx');
RESET enable_seqscan;

-- ---- A retention policy on an integer column is skipped; the others still run --------------
CREATE TABLE app.ticks (id int, t int);
CREATE TABLE app.logs (id int, at timestamptz);
INSERT INTO app.logs VALUES (1, now() - interval '90 days'), (2, now());
INSERT INTO retention_policies (table_schema, table_name, time_column, keep)
VALUES ('app', 'ticks', 't', '30 days'), ('app', 'logs', 'at', '30 days'), ('app', 'Logs', 'at', '30 days'),
       ('app', 'b', 'AT', '30 days');
SELECT policy, action, rows, detail FROM apply_data_retention_policies(dry_run => true)
WHERE policy LIKE 'app.%' ORDER BY 1;
SELECT policy, action, rows FROM apply_data_retention_policies() WHERE policy LIKE 'app.%' ORDER BY 1;
DELETE FROM retention_policies WHERE table_schema = 'app';
-- The compliance report's audit settings name table and columns as the catalog spells them.
CREATE TABLE app."AuditLog" ("changedAt" timestamptz, "tenantId" text);
INSERT INTO app."AuditLog" VALUES ('2026-03-10', 't1'), ('2026-03-11', 't2');
SET pg_runbook.audit_table = 'app.AuditLog';
SET pg_runbook.audit_time_column = 'changedAt';
SET pg_runbook.audit_tenant_column = 'tenantId';
SELECT r->'sections'->'audit'->>'table' AS audit_table, r->'sections'->'audit'->>'changes' AS changes
FROM (SELECT generate_compliance_report('t1', '2026-03-31') AS r) s;
SET pg_runbook.audit_time_column = 'changed_at';
SELECT r->'sections'->'audit'->>'status' AS status, r->'sections'->'audit'->>'detail' AS detail
FROM (SELECT generate_compliance_report('t1', '2026-03-31') AS r) s;
SET pg_runbook.audit_table = 'app.Audit_log';
SELECT r->'sections'->'audit'->>'detail' AS detail FROM (SELECT generate_compliance_report(NULL, '2026-03-31') AS r) s;
RESET pg_runbook.audit_table; RESET pg_runbook.audit_time_column; RESET pg_runbook.audit_tenant_column;

-- ---- The lints Supabase users expect ------------------------------------------------------
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN; END IF;
END $$;
CREATE TABLE app.secret (id int, owner text);
ALTER TABLE app.secret ENABLE ROW LEVEL SECURITY;
CREATE VIEW app.v_secret AS SELECT * FROM app.secret;
CREATE VIEW app.v_safe WITH (security_invoker = true) AS SELECT * FROM app.secret;
CREATE VIEW app.v_internal AS SELECT * FROM app.secret;
GRANT SELECT ON app.v_secret, app.v_safe TO anon, authenticated;
CREATE FUNCTION app.plain_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION app.pinned_fn() RETURNS int LANGUAGE sql SET search_path = pg_catalog AS 'SELECT 1';
GRANT SELECT ON accepted_findings TO anon;
SELECT "check", status, object, detail, remediation FROM validate_security_configuration()
WHERE object LIKE 'app.%' OR "check" IN ('extension_in_public', 'extension_tables_exposed') ORDER BY 1, 3;
-- Every remediation for these objects, run as printed (the extension_in_public one is empty:
-- pg_runbook is not relocatable).
SELECT remediation FROM validate_security_configuration()
WHERE (object LIKE 'app.%' OR "check" = 'extension_tables_exposed') AND remediation <> '' ORDER BY 1 \gexec
SELECT "check", status, object FROM validate_security_configuration()
WHERE (object LIKE 'app.%' OR "check" = 'extension_tables_exposed') AND status <> 'PASS' ORDER BY 1, 3;

-- ---- Accepted findings: reported as SUPPRESSED, not raised, until they expire --------------
SELECT "check", status, object FROM verify_migration('prisma_names') WHERE status = 'FAIL' ORDER BY 3;
SELECT regress.error_of($$SELECT * FROM assert_migration_success('prisma_names')$$) LIKE 'P0004:%' AS raises;
SELECT accept_finding('expected_table', 'app.Scna', 'typo in the ticket; the table is app.Scan');
SELECT accept_finding('expected_index', 'app.Scan_dedupe_lookup', 'shortened name; see PR 12');
SELECT accept_finding('expected_constraint', 'app.Scan.Scan_pky', 'expires', now() + interval '1 hour');
SELECT "check", status, object, CASE WHEN object = 'app.Scan.Scan_pky' THEN detail LIKE 'accepted by % until %: expires; found: %' ELSE NULL END AS until_shown,
       CASE WHEN object <> 'app.Scan.Scan_pky' THEN detail END AS detail
FROM verify_migration('prisma_names') WHERE status <> 'PASS' ORDER BY 3;
SELECT count(*) AS rows FROM assert_migration_success('prisma_names');
-- Expired: applies no longer.
SELECT accept_finding('expected_constraint', 'app.Scan.Scan_pky', 'expired', now() - interval '1 second');
SELECT "check", status, object FROM verify_migration('prisma_names') WHERE status <> 'PASS' ORDER BY 3;
SELECT regress.error_of($$SELECT * FROM assert_migration_success('prisma_names')$$);
-- The security and integrity checks honour them too.
CREATE TABLE app.no_pk (x int);
CREATE TABLE app.locked (id int PRIMARY KEY);
ALTER TABLE app.locked ENABLE ROW LEVEL SECURITY;
SELECT accept_finding('rls_enabled_without_policy', 'app.locked', 'owner-only table by design');
SELECT accept_finding('table_without_primary_key', 'app.no_pk', 'append-only import table');
SELECT "check", status, object, detail FROM validate_security_configuration() WHERE object = 'app.locked';
SELECT "check", status, object FROM check_data_integrity() WHERE object = 'app.no_pk';
SELECT withdraw_finding('table_without_primary_key', 'app.no_pk') AS withdrawn,
       withdraw_finding('table_without_primary_key', 'app.no_pk') AS again;
SELECT "check", status, object FROM check_data_integrity() WHERE object = 'app.no_pk';
-- Bad input: 22023 naming the argument, nothing accepted.
SELECT regress.error_of($$SELECT accept_finding(NULL, 'x', 'why')$$);
SELECT regress.error_of($$SELECT accept_finding('c', 'x', '  ')$$);
SELECT regress.error_of($$SELECT accept_finding('c', NULL, 'why')$$);
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) t(oid) JOIN pg_class c ON c.oid = t.oid
WHERE e.extname = 'pg_runbook' AND c.relname = 'accepted_findings';

DELETE FROM accepted_findings;
DELETE FROM migration_expectations WHERE migration IN ('prisma_names', 'prisma_functions');
DELETE FROM schema_baselines WHERE label IN ('sp', 'parts');
DROP SCHEMA app CASCADE;
DROP TABLE public.b;
REVOKE ALL ON accepted_findings FROM anon;
DROP OWNED BY anon, authenticated;
DROP ROLE anon, authenticated;
