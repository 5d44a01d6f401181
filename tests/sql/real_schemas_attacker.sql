-- Issue 15's functions resolve nothing through the caller's search_path: with functions and an
-- operator planted in public that would win an unqualified call (an exact-type match beats
-- pg_catalog's version needing a cast), every check and generator still runs, and none of the
-- planted objects is ever called (each would raise).
CREATE SCHEMA "Att";
CREATE TABLE "Att"."P" (id int PRIMARY KEY);
CREATE TABLE "Att"."C" (id int PRIMARY KEY, "pId" int, qty int CHECK (qty > 0));
ALTER TABLE "Att"."C" ADD CONSTRAINT "C_p_fk" FOREIGN KEY ("pId") REFERENCES "Att"."P" NOT VALID;
CREATE TABLE "Att"."Ev" (at date NOT NULL, x int) PARTITION BY RANGE (at);
CREATE TABLE "Att"."Ev_1" PARTITION OF "Att"."Ev" FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE INDEX "Ev_x_idx" ON ONLY "Att"."Ev" (x);
CREATE INDEX "C_qty_idx" ON "Att"."C" (qty);
INSERT INTO retention_policies (table_schema, table_name, time_column, keep) VALUES ('Att', 'Ev', 'at', '30 days');
SELECT schema_baseline('att') > 0 AS taken;
DROP INDEX "Att"."C_qty_idx";
SELECT expect_migration('att', '{"indexes": ["Att.C_qty_idx"], "tables": ["Att.C"], "constraints": ["Att.C.C_p_fk"], "functions": ["pg_catalog.lower(text)"]}');

CREATE FUNCTION public.hijacked(oid, regclass) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE 'hijacked: = (oid, regclass)'; END$$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.hijacked);
CREATE FUNCTION public.quote_ident(name) RETURNS text LANGUAGE plpgsql AS $$BEGIN RAISE 'hijacked: quote_ident(name)'; END$$;
CREATE FUNCTION public.format(text, name, name) RETURNS text LANGUAGE plpgsql AS $$BEGIN RAISE 'hijacked: format(text, name, name)'; END$$;
CREATE FUNCTION public.format_type(oid, integer) RETURNS text LANGUAGE plpgsql AS $$BEGIN RAISE 'hijacked: format_type'; END$$;
CREATE FUNCTION public.count(integer) RETURNS bigint LANGUAGE plpgsql AS $$BEGIN RAISE 'hijacked: count'; END$$;

-- The traps work: unqualified calls reach them.
SELECT regress.error_of($$SELECT quote_ident('x'::name)$$);
SELECT regress.error_of($$SELECT 1 FROM pg_class WHERE oid = 'pg_class'::regclass$$);
SELECT regress.error_of($$SELECT format('%I.%I', 'a'::name, 'b'::name)$$);
SELECT change, name FROM schema_diff('att');
SELECT statement FROM rollback_ddl('att');
SELECT count(*) > 0 AS ran FROM verify_migration_success();
SELECT count(*) > 0 AS ran FROM verify_migration('att');
SELECT status FROM check_query_plan('SELECT 1', expect_index => 'Att.C_qty_idx');
SELECT count(*) > 0 AS ran FROM analyze_index_usage();
SELECT count(*) >= 0 AS ran FROM find_redundant_indexes();
SELECT count(*) >= 0 AS ran FROM find_unused_indexes(min_stats_age => '0');
SELECT count(*) > 0 AS ran FROM find_unused_indexes(min_stats_age => '0') WHERE schemaname = 'Att';
SELECT count(*) >= 0 AS ran FROM find_missing_fk_indexes();
SELECT count(*) >= 0 AS ran FROM index_build_progress();
SELECT count(*) > 0 AS ran FROM check_data_integrity();
SELECT count(*) > 0 AS ran FROM validate_security_configuration();
SELECT count(*) > 0 AS ran FROM analyze_partition_distribution();
SELECT count(*) > 0 AS ran FROM apply_data_retention_policies(dry_run => true);
SELECT accept_finding('table_without_primary_key', 'x', 'attacker test');
SELECT withdraw_finding('table_without_primary_key', 'x');
SELECT schema_baseline('att', replace => true) > 0 AS taken;

DROP OPERATOR public.= (oid, regclass);
DROP FUNCTION public.hijacked(oid, regclass), public.quote_ident(name), public.format(text, name, name),
  public.format_type(oid, integer), public.count(integer);
DELETE FROM retention_policies WHERE table_schema = 'Att';
DELETE FROM migration_expectations WHERE migration = 'att';
DELETE FROM schema_baselines WHERE label = 'att';
DROP SCHEMA "Att" CASCADE;
