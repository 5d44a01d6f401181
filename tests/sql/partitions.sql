-- analyze_partition_distribution(), drop_old_partitions(), retention_policies and
-- apply_data_retention_policies(). The audit table is built relative to the current date, so
-- the expected output holds on any day: partition audit_log_mNN covers the month NN months ago.
BEGIN;
CREATE SCHEMA part_test;
CREATE TABLE part_test.audit_log (id bigserial, tenant text, created_at timestamptz NOT NULL, action text)
  PARTITION BY RANGE (created_at);
DO $$
DECLARE m date;
BEGIN
  FOR i IN 0..29 LOOP
    m := date_trunc('month', current_date)::date - make_interval(months => i);
    EXECUTE format('CREATE TABLE part_test.%I PARTITION OF part_test.audit_log FOR VALUES FROM (%L) TO (%L)',
                   'audit_log_m' || lpad(i::text, 2, '0'), m, m + interval '1 month');
  END LOOP;
END $$;
CREATE TABLE part_test.audit_log_default PARTITION OF part_test.audit_log DEFAULT;
-- A bound retention cannot read as a date (a BC year) is skipped and reported, never dropped.
CREATE TABLE part_test.audit_log_ancient PARTITION OF part_test.audit_log FOR VALUES FROM (MINVALUE) TO ('0100-01-01 BC');
INSERT INTO part_test.audit_log (tenant, created_at, action)
SELECT 'seed', date_trunc('month', current_date) - make_interval(months => i) + interval '1 hour', 'insert'
FROM generate_series(0, 29) i;
-- Rows ten years old land in the default partition; the current month gets a burst of rows.
INSERT INTO part_test.audit_log (tenant, created_at, action)
SELECT 'seed', current_date - interval '10 years', 'insert' FROM generate_series(1, 3);
INSERT INTO part_test.audit_log (tenant, created_at, action)
SELECT 'seed', date_trunc('month', current_date) + interval '2 hours', 'update' FROM generate_series(1, 200);
CREATE TABLE part_test.plain (id int PRIMARY KEY, created_at timestamptz);
CREATE TABLE part_test.by_region (region text, created_at date) PARTITION BY LIST (region);
ANALYZE part_test.audit_log;

CREATE FUNCTION pg_temp.partitions() RETURNS bigint LANGUAGE sql AS
  $$SELECT count(*) FROM pg_inherits WHERE inhparent = 'part_test.audit_log'::regclass$$;

-- Distribution: the default partition holding rows is a WARN, the busy current month is skewed.
SELECT partition, estimated_rows, share_pct, skewed, status, detail
FROM analyze_partition_distribution() WHERE parent = 'part_test.audit_log'
  AND (status <> 'PASS' OR partition IN ('part_test.audit_log_m01', 'part_test.audit_log_m29'))
ORDER BY partition;
SELECT count(*) AS partitions_listed FROM analyze_partition_distribution() WHERE parent = 'part_test.audit_log';

-- dry_run lists exactly the partitions wholly older than 24 months, and drops none.
SELECT partition, action, detail LIKE 'every row is before the cutoff %' AS before_cutoff
FROM drop_old_partitions(24, dry_run => true) WHERE parent = 'part_test.audit_log' ORDER BY partition;
SELECT pg_temp.partitions() AS partitions_after_dry_run;

-- Bad input raises 22023 and drops nothing.
SELECT regress.error_of($$SELECT * FROM drop_old_partitions(-1)$$);
SELECT regress.error_of($$SELECT * FROM drop_old_partitions(NULL)$$);
SELECT regress.error_of($$SELECT * FROM drop_old_partitions(24, 'part_test.plain')$$);
SELECT regress.error_of($$SELECT * FROM drop_old_partitions(24, 'part_test.by_region')$$);
SELECT regress.error_of($$SELECT * FROM drop_old_partitions(24, dry_run => NULL)$$);
SELECT regress.error_of($$SELECT * FROM analyze_partition_distribution(skew_factor => 0.5)$$);
SELECT pg_temp.partitions() AS partitions_after_bad_input;

-- The real run detaches and drops those five, keeps the default and the unreadable one.
SELECT partition, action FROM drop_old_partitions(24, 'part_test.audit_log') ORDER BY partition;
SELECT pg_temp.partitions() AS partitions_left;
SELECT min(c.relname) AS oldest_left FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'part_test.audit_log'::regclass AND c.relname ~ '_m\d\d$' AND c.relname > 'audit_log_m23';
SELECT count(*) AS rows_left FROM part_test.audit_log;

-- Retention policies: drop_partitions on the audit table, delete_rows in batches on a plain table.
INSERT INTO part_test.plain SELECT g, now() - make_interval(days => g) FROM generate_series(1, 100) g;
INSERT INTO retention_policies (table_schema, table_name, time_column, keep, mode, batch_size) VALUES
  ('part_test', 'audit_log', 'created_at', '12 months', 'drop_partitions', 1000),
  ('part_test', 'plain', 'created_at', '30 days', 'delete_rows', 7),
  ('part_test', 'missing', 'created_at', '30 days', 'delete_rows', 7),
  ('part_test', 'by_region', 'created_at', '30 days', 'drop_partitions', 7);
SELECT policy, mode, action, object, rows FROM apply_data_retention_policies(dry_run => true) ORDER BY 1, 4;
SELECT pg_temp.partitions() AS partitions_after_dry_run, (SELECT count(*) FROM part_test.plain) AS plain_rows;
SELECT policy, mode, action, object, rows, detail FROM apply_data_retention_policies()
WHERE (action <> 'dropped' OR object = 'part_test.audit_log_m12') AND object <> 'part_test.audit_log_ancient' ORDER BY 1, 4;
-- The bound printed depends on the time zone; that it is skipped as unreadable does not.
SELECT action, detail LIKE '%cannot read the bound safely%' AS unreadable FROM drop_old_partitions(0, dry_run => true)
WHERE partition = 'part_test.audit_log_ancient';
SELECT pg_temp.partitions() AS partitions_left, (SELECT count(*) FROM part_test.plain) AS plain_rows;
SELECT regress.error_of($$SELECT * FROM apply_data_retention_policies(NULL)$$);
SELECT regress.error_of($$INSERT INTO retention_policies VALUES ('a', 'b', 'c', '-1 day', 'delete_rows')$$);
-- pg_dump keeps the policies.
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) t(oid) JOIN pg_class c ON c.oid = t.oid
WHERE e.extname = 'pg_runbook' AND c.relname = 'retention_policies';
ROLLBACK;
