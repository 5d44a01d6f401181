-- Runs first, in the freshly created regression database (pg_regress has already run
-- CREATE EXTENSION pg_runbook). Defines what the other files share.

-- error_of(sql): runs sql and returns 'SQLSTATE: message' of the error it raises, or 'no error'.
-- Tests pin both the code and the message this way without depending on source line numbers.
CREATE SCHEMA regress;
GRANT USAGE ON SCHEMA regress TO PUBLIC;  -- tests run some calls as unprivileged roles
CREATE FUNCTION regress.error_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE sql;
  RETURN 'no error';
EXCEPTION WHEN OTHERS OR assert_failure THEN  -- OTHERS leaves out assert_failure (P0004)
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
