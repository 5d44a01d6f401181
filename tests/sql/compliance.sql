-- generate_compliance_report(): one jsonb document; pinned here are its shape and the parts that
-- do not depend on the machine (the check lists vary with the server's state).
BEGIN;
CREATE SCHEMA comp_test;
CREATE TABLE comp_test.audit (id bigint, tenant text, changed_at timestamptz NOT NULL, action text)
  PARTITION BY RANGE (changed_at);
CREATE TABLE comp_test.audit_default PARTITION OF comp_test.audit DEFAULT;
INSERT INTO comp_test.audit
SELECT g, CASE WHEN g <= 3 THEN 'acme' ELSE 'globex' END, date_trunc('month', current_date) + interval '1 hour', 'update'
FROM generate_series(1, 5) g;
INSERT INTO comp_test.audit VALUES (6, 'acme', date_trunc('month', current_date) - interval '1 day', 'update');
CREATE TABLE comp_test.orphan_ref (id int PRIMARY KEY, ref int);
CREATE TABLE comp_test.target (id int PRIMARY KEY);
INSERT INTO comp_test.orphan_ref VALUES (1, 42);
ALTER TABLE comp_test.orphan_ref ADD FOREIGN KEY (ref) REFERENCES comp_test.target NOT VALID;

CREATE TEMP TABLE report AS SELECT generate_compliance_report() AS r;
SELECT jsonb_object_keys(r) AS key FROM report ORDER BY 1;
SELECT jsonb_object_keys(r->'sections') AS section FROM report ORDER BY 1;
SELECT r->>'report' AS report, r->'tenant' AS tenant, (r->>'as_of')::date = current_date AS as_of_today,
       r->>'database' AS database FROM report;
SELECT r->'sections'->'audit' AS audit FROM report;
-- The pre-deployment checks are the preflight ones.
SELECT c->>'check' AS preflight_check FROM report, jsonb_array_elements(r->'sections'->'preflight'->'checks') c ORDER BY 1;
SELECT c->>'status' AS status, c->>'object' AS object FROM report, jsonb_array_elements(r->'sections'->'integrity'->'checks') c
WHERE c->>'object' LIKE '%comp\_test.%' ORDER BY 1, 2;
SELECT r->'sections'->'integrity'->>'status' AS integrity_status FROM report;

-- With an audit table and a tenant column, counts are this month's changes of that tenant.
SET pg_runbook.audit_table = 'comp_test.audit';
SELECT (generate_compliance_report('acme')->'sections'->'audit') - 'period' AS audit;
SELECT generate_compliance_report('acme')->'sections'->'audit'->'period'->>'to' = current_date::text AS period_ends_as_of;
SET pg_runbook.audit_tenant_column = 'tenant';
SELECT (generate_compliance_report('acme')->'sections'->'audit') - 'period' AS audit;
-- as_of on the last day of last month counts that month.
SELECT generate_compliance_report('acme', (date_trunc('month', current_date) - interval '1 day')::date)->'sections'->'audit'->'changes' AS changes_last_month;
SET pg_runbook.audit_table = 'comp_test.nothing_here';
SELECT generate_compliance_report()->'sections'->'audit' AS audit;
RESET pg_runbook.audit_table;
RESET pg_runbook.audit_tenant_column;

SELECT regress.error_of($$SELECT generate_compliance_report('x', NULL)$$);
ROLLBACK;
