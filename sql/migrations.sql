-- Migration verification and schema baselines: the tables behind expect_migration(),
-- verify_migration(), schema_baseline(), schema_diff() and rollback_ddl().

CREATE TABLE @extschema@.migration_expectations (
    migration     text PRIMARY KEY CHECK (migration <> ''),
    expected      jsonb NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.migration_expectations IS
  'What each migration must leave behind (indexes, constraints, tables, materialized views, functions), as registered by expect_migration()';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.migration_expectations', '');

CREATE TABLE @extschema@.schema_baselines (
    label    text PRIMARY KEY CHECK (label <> ''),
    taken_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.schema_baselines IS
  'Snapshots of index, constraint and materialized view definitions taken by schema_baseline()';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.schema_baselines', '');

CREATE TABLE @extschema@.schema_baseline_objects (
    label       text NOT NULL REFERENCES @extschema@.schema_baselines (label) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('index', 'constraint', 'materialized view')),
    schemaname  text NOT NULL,
    tablename   text NOT NULL,
    name        text NOT NULL,
    definition  text NOT NULL,
    valid       boolean NOT NULL,
    contype     "char",
    partitioned boolean NOT NULL DEFAULT false,
    inherited   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (label, kind, schemaname, tablename, name)
);
COMMENT ON TABLE @extschema@.schema_baseline_objects IS
  'One index, constraint or materialized view of a baseline: its definition (pg_get_indexdef, pg_get_constraintdef, pg_get_viewdef, read under search_path = pg_catalog, pg_temp so every name is schema-qualified) and whether it was valid';
COMMENT ON COLUMN @extschema@.schema_baseline_objects.inherited IS
  'A partition''s copy of its parent''s index or constraint: compared, never dropped or re-created by itself';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.schema_baseline_objects', '');

COMMENT ON FUNCTION @extschema@.analyze_index_usage() IS
  'One row per index of user tables: scans, tuples read and fetched, size (from pg_class.relpages), kind, validity, redundancy and a recommendation';
COMMENT ON FUNCTION @extschema@.find_redundant_indexes() IS
  'Indexes that duplicate another or whose keys lead another index''s keys, with the covering index and a DROP INDEX CONCURRENTLY statement';
COMMENT ON FUNCTION @extschema@.find_unused_indexes(bigint, interval) IS
  'Indexes with no scans since statistics were last reset: verdict unused (with a DROP statement) only when the statistics cover min_stats_age on a primary, else unknown; excluding constraint-backing, unique, replica identity and sole foreign-key indexes. For runbook_reader.';
COMMENT ON FUNCTION @extschema@.find_missing_fk_indexes() IS
  'Foreign keys whose referencing columns lead no index, with a suggested CREATE INDEX CONCURRENTLY statement';
COMMENT ON FUNCTION @extschema@.index_build_progress() IS
  'CREATE INDEX and REINDEX builds in progress in this database, with phase and percent done';
COMMENT ON FUNCTION @extschema@.verify_migration_success() IS
  'Invalid indexes, running index builds, NOT VALID constraints and the expectations of every registered migration: check, status, object, detail';
COMMENT ON FUNCTION @extschema@.assert_migration_success(text) IS
  'Like verify_migration_success() (or verify_migration() for one migration), but raises P0004 listing every FAIL';
COMMENT ON FUNCTION @extschema@.expect_migration(text, jsonb) IS
  'Registers (or replaces) what a migration must leave behind: {"indexes": [...], "constraints": [...], "tables": [...], "materialized_views": [...], "functions": [...]}';
COMMENT ON FUNCTION @extschema@.verify_migration(text) IS
  'Checks that each object a migration registered with expect_migration() exists and is valid (and, for indexes, ready)';
COMMENT ON FUNCTION @extschema@.check_query_plan(text, text, double precision) IS
  'Runs EXPLAIN (ANALYZE, BUFFERS) on one read-only SELECT and reports timings, indexes used, sequential scans and PASS/FAIL; refuses anything else (22023) without running it';
COMMENT ON FUNCTION @extschema@.schema_baseline(text, boolean) IS
  'Snapshots index, constraint and materialized view definitions under a label; taking a label again needs replace => true';
COMMENT ON FUNCTION @extschema@.schema_diff(text) IS
  'What was added, dropped or changed in indexes, constraints and materialized views since a baseline';
COMMENT ON FUNCTION @extschema@.rollback_ddl(text) IS
  'Statements, one per row in a safe order, that bring indexes and constraints back to a baseline (run them with psql \gexec, outside a transaction)';
