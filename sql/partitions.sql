-- Retention policies: what apply_data_retention_policies() removes, table by table.
CREATE TABLE @extschema@.retention_policies (
    table_schema text NOT NULL,
    table_name   text NOT NULL,
    time_column  text NOT NULL,
    keep         interval NOT NULL CHECK (keep > interval '0'),
    mode         text NOT NULL DEFAULT 'delete_rows' CHECK (mode IN ('drop_partitions', 'delete_rows')),
    batch_size   integer NOT NULL DEFAULT 10000 CHECK (batch_size > 0),
    enabled      boolean NOT NULL DEFAULT true,
    PRIMARY KEY (table_schema, table_name)
);
COMMENT ON TABLE @extschema@.retention_policies IS
  'Retention: one row per table. mode drop_partitions detaches and drops range partitions that end before current_date - keep; delete_rows deletes rows with time_column < now() - keep in batches of batch_size. Kept by pg_dump.';
COMMENT ON COLUMN @extschema@.retention_policies.time_column IS
  'The time column: for drop_partitions, the table''s range partition key';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.retention_policies', '');
