-- Data integrity, security configuration, partitions and retention, compliance report.
DROP SCHEMA IF EXISTS demo_integrity CASCADE;
CREATE SCHEMA demo_integrity;
CREATE TABLE demo_integrity.customers (id int PRIMARY KEY);
CREATE TABLE demo_integrity.orders (id int PRIMARY KEY, customer_id int);
INSERT INTO demo_integrity.customers VALUES (1);
INSERT INTO demo_integrity.orders VALUES (1, 1), (2, 99);
ALTER TABLE demo_integrity.orders ADD FOREIGN KEY (customer_id) REFERENCES demo_integrity.customers NOT VALID;
CREATE POLICY mine ON demo_integrity.orders USING (true);
CREATE FUNCTION demo_integrity.admin_only() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
CREATE TABLE demo_integrity.events (at timestamptz NOT NULL, what text) PARTITION BY RANGE (at);
DO $$ BEGIN FOR i IN 0..29 LOOP
  EXECUTE format('CREATE TABLE demo_integrity.events_m%s PARTITION OF demo_integrity.events FOR VALUES FROM (%L) TO (%L)',
    lpad(i::text, 2, '0'), date_trunc('month', current_date) - make_interval(months => i),
    date_trunc('month', current_date) - make_interval(months => i - 1));
END LOOP; END $$;
CREATE TABLE demo_integrity.events_default PARTITION OF demo_integrity.events DEFAULT;
INSERT INTO demo_integrity.events VALUES (now() - interval '5 years', 'lost'), (now(), 'today');

\echo '== check_data_integrity()'
SELECT * FROM check_data_integrity() WHERE object LIKE '%demo\_integrity%';
\echo '== validate_security_configuration()'
SELECT "check", status, object, remediation FROM validate_security_configuration() WHERE status <> 'PASS';
\echo '== analyze_partition_distribution() (non-PASS rows)'
SELECT parent, partition, estimated_rows, size, status, detail FROM analyze_partition_distribution() WHERE status <> 'PASS';
\echo '== drop_old_partitions(24, dry_run => true)'
SELECT partition, action, detail FROM drop_old_partitions(24, 'demo_integrity.events', dry_run => true);
\echo '== retention policy, dry run'
INSERT INTO retention_policies VALUES ('demo_integrity', 'events', 'at', '24 months', 'drop_partitions') ON CONFLICT DO NOTHING;
SELECT policy, action, object FROM apply_data_retention_policies(dry_run => true);
\echo '== generate_compliance_report(): section statuses'
SET pg_runbook.audit_table = 'demo_integrity.events';
SELECT key AS section, value->>'status' AS status FROM jsonb_each(generate_compliance_report('demo-org')->'sections');
DELETE FROM retention_policies WHERE table_schema = 'demo_integrity';
