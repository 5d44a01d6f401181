-- validate_security_configuration(): RLS, exposed schemas, SECURITY DEFINER search_path, schema
-- public, roles and server settings. The role checks see the whole cluster: rows are filtered to
-- this file's objects where they would vary by machine.
BEGIN;
CREATE SCHEMA sec_test;
CREATE TABLE sec_test.accounts (id int PRIMARY KEY, owner text);
CREATE POLICY own_rows ON sec_test.accounts USING (owner = current_user);   -- RLS left off
CREATE TABLE sec_test.guarded (id int PRIMARY KEY);
ALTER TABLE sec_test.guarded ENABLE ROW LEVEL SECURITY;
CREATE FUNCTION sec_test.unsafe_definer() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
CREATE FUNCTION sec_test.safe_definer() RETURNS int LANGUAGE sql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp AS 'SELECT 1';
CREATE ROLE regress_sec_superuser LOGIN SUPERUSER;

SET pg_runbook.exposed_schemas = 'sec_test';
SELECT "check", status, object, detail, remediation FROM validate_security_configuration()
WHERE object LIKE 'sec\_test.%' OR object = 'regress_sec_superuser' ORDER BY 1, 3;

-- The checks every cluster gets, with this test cluster's (fixed) configuration.
SELECT DISTINCT "check" FROM validate_security_configuration() ORDER BY 1;
SELECT "check", status, detail, remediation FROM validate_security_configuration()
WHERE "check" IN ('public_schema_create', 'password_encryption', 'ssl', 'login_roles_without_password') ORDER BY 1;

-- Granting CREATE on public to PUBLIC is reported with its fix; a schema list is read with quoting.
GRANT CREATE ON SCHEMA public TO PUBLIC;
SELECT status, object, remediation FROM validate_security_configuration() WHERE "check" = 'public_schema_create';
SET pg_runbook.exposed_schemas = ' "sec_test" , nonexistent';
SELECT object FROM validate_security_configuration() WHERE "check" = 'exposed_table_without_rls';
SET password_encryption = 'md5';
SELECT status, detail FROM validate_security_configuration() WHERE "check" = 'password_encryption';
ROLLBACK;

-- The extension's own tables (here retention_policies, in the exposed schema public) are left out:
-- they are managed by the extension, not by the application.
SELECT count(*) AS extension_objects_flagged
FROM validate_security_configuration() WHERE object LIKE '%retention_policies%';
