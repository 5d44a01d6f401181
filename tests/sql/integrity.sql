-- check_data_integrity(): NOT VALID constraints with bounded violation counts, orphaned rows of
-- NOT VALID foreign keys, tables without a primary key, sequence headroom.
BEGIN;
CREATE SCHEMA int_test;
CREATE TABLE int_test.parent (id int PRIMARY KEY);
CREATE TABLE int_test.child (id int PRIMARY KEY, parent_id int, qty int);
INSERT INTO int_test.parent VALUES (1), (2);
INSERT INTO int_test.child SELECT g, CASE WHEN g <= 3 THEN 1 ELSE 100 + g END, g - 6 FROM generate_series(1, 10) g;
INSERT INTO int_test.child VALUES (11, NULL, 1);  -- a NULL reference is not an orphan
ALTER TABLE int_test.child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES int_test.parent NOT VALID;
ALTER TABLE int_test.child ADD CONSTRAINT child_qty_positive CHECK (qty > 0) NOT VALID;
CREATE TABLE int_test.no_pk (a int);
CREATE SEQUENCE int_test.nearly_full MAXVALUE 100;
SELECT setval('int_test.nearly_full', 96);
CREATE SEQUENCE int_test.filling MAXVALUE 100;
SELECT setval('int_test.filling', 85);
CREATE SEQUENCE int_test.fresh MAXVALUE 100;

SELECT "check", status, object, detail FROM check_data_integrity()
WHERE object LIKE '%int\_test.%' ORDER BY "check", object;

-- The violation count is bounded, and says so.
SELECT "check", status, detail FROM check_data_integrity(violation_limit => 3)
WHERE object LIKE '%int\_test.%' AND "check" IN ('not_valid_constraint', 'orphaned_foreign_keys') ORDER BY 1, 3;

-- A table whose name holds format()'s '%s' is still counted correctly.
CREATE TABLE int_test."odd%s name" (id int PRIMARY KEY, v int);
INSERT INTO int_test."odd%s name" VALUES (1, -1), (2, 5);
ALTER TABLE int_test."odd%s name" ADD CONSTRAINT odd_v_positive CHECK (v > 0) NOT VALID;
SELECT status, detail FROM check_data_integrity() WHERE object LIKE 'odd\_v\_positive%';
DROP TABLE int_test."odd%s name";

-- Sequence thresholds come from the settings and can be overridden per call: a sequence 60% used
-- passes at the default warn threshold (80) and warns at 50.
CREATE SEQUENCE int_test.half_used MAXVALUE 100;
SELECT setval('int_test.half_used', 60);
SELECT count(*) AS half_used_flagged_by_default FROM check_data_integrity() WHERE object = 'int_test.half_used';
SET pg_runbook.sequence_warn_pct = 50;
SELECT object, status FROM check_data_integrity() WHERE "check" = 'sequence_headroom' AND object LIKE 'int\_test.%' ORDER BY 1;
SELECT object, status FROM check_data_integrity(sequence_fail_pct => 80) WHERE "check" = 'sequence_headroom' AND object LIKE 'int\_test.%' ORDER BY 1;
RESET pg_runbook.sequence_warn_pct;

-- Once fixed and validated, the constraints leave the report and the checks pass.
DELETE FROM int_test.child WHERE parent_id > 2 OR qty <= 0;
ALTER TABLE int_test.child VALIDATE CONSTRAINT child_parent_fk;
ALTER TABLE int_test.child VALIDATE CONSTRAINT child_qty_positive;
SELECT "check", status, object, detail FROM check_data_integrity()
WHERE "check" IN ('not_valid_constraint', 'orphaned_foreign_keys');

-- Bad input: 22023 naming the argument.
SELECT regress.error_of($$SELECT * FROM check_data_integrity(violation_limit => 0)$$);
SELECT regress.error_of($$SELECT * FROM check_data_integrity(violation_limit => NULL)$$);
SELECT regress.error_of($$SELECT * FROM check_data_integrity(sequence_warn_pct => 99, sequence_fail_pct => 90)$$);
ROLLBACK;
