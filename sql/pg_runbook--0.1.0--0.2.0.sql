-- pg_runbook 0.1.0 -> 0.2.0, run by ALTER EXTENSION pg_runbook UPDATE.
-- Each section is one area's change; the objects it creates or alters match what a fresh
-- install of 0.2.0 creates (the upgrade test compares the two catalogs).
\echo Use "ALTER EXTENSION pg_runbook UPDATE" to load this file. \quit

-- ==== privileges: the three roles (sql/roles.sql) ====
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'runbook_reader') THEN
        CREATE ROLE runbook_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'runbook_operator') THEN
        CREATE ROLE runbook_operator NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'runbook_admin') THEN
        CREATE ROLE runbook_admin NOLOGIN;
    END IF;
END
$roles$;
GRANT runbook_reader TO runbook_operator;
GRANT runbook_operator TO runbook_admin;
-- The checks read every session, lock and setting, as a monitoring role does.
GRANT pg_monitor TO runbook_reader;
-- ==== end privileges ====



-- ==== security (issue 14): cache entries belong to a role; the cache trigger needs no rights ====
ALTER TABLE @extschema@.query_cache ADD COLUMN owner_role oid, ADD COLUMN query_search_path text;
ALTER TABLE @extschema@.query_cache_stale ADD COLUMN owner_role oid, ADD COLUMN query_search_path text;
-- Entries cached by 0.1.0 had no owner: they become the extension owner's.
UPDATE @extschema@.query_cache SET owner_role = (SELECT extowner FROM pg_catalog.pg_extension
    WHERE extname OPERATOR(pg_catalog.=) 'pg_runbook');
UPDATE @extschema@.query_cache_stale SET owner_role = (SELECT extowner FROM pg_catalog.pg_extension
    WHERE extname OPERATOR(pg_catalog.=) 'pg_runbook');
ALTER TABLE @extschema@.query_cache ALTER COLUMN owner_role SET NOT NULL;
ALTER TABLE @extschema@.query_cache_stale ALTER COLUMN owner_role SET NOT NULL;
ALTER FUNCTION @extschema@.cache_invalidate_trigger() SECURITY DEFINER;
-- A request's time must be finite (record_request(at => 'infinity') landed in the year 294276).
CREATE FUNCTION @extschema@.check_request_time("at" timestamp with time zone, "n" bigint) RETURNS bool
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'check_request_time_wrapper';
COMMENT ON FUNCTION @extschema@.check_request_time(timestamptz, bigint) IS
  'Validates a request''s time for record_request()/record_requests(): NULL or finite, else 22023.';
CREATE OR REPLACE FUNCTION @extschema@.record_requests(requests jsonb) RETURNS bigint
LANGUAGE sql VOLATILE
BEGIN ATOMIC
  WITH ins AS (
    INSERT INTO @extschema@.performance_metrics (created_at, endpoint, method, status_code, duration_ms, cache_hit)
    SELECT COALESCE(r.at, now()), r.endpoint, r.method, r.status_code, r.duration_ms, r.cache_hit
    FROM ROWS FROM (jsonb_to_recordset(requests)
           AS (endpoint text, method text, status_code integer, duration_ms double precision, cache_hit boolean, at timestamptz))
         WITH ORDINALITY AS r(endpoint, method, status_code, duration_ms, cache_hit, at, n)
    WHERE @extschema@.check_request(r.endpoint, r.duration_ms, r.status_code, r.n)
      AND @extschema@.check_request_time(r.at, r.n)
    RETURNING 1
  )
  SELECT count(*) FROM ins;
END;
CREATE OR REPLACE FUNCTION @extschema@.record_request(endpoint text, duration_ms double precision, status_code integer,
                                          cache_hit boolean DEFAULT NULL, method text DEFAULT NULL,
                                          at timestamptz DEFAULT now()) RETURNS bigint
LANGUAGE sql VOLATILE
BEGIN ATOMIC
  INSERT INTO @extschema@.performance_metrics (created_at, endpoint, method, status_code, duration_ms, cache_hit)
  SELECT COALESCE(at, now()), endpoint, method, status_code, duration_ms, cache_hit
  WHERE @extschema@.check_request(endpoint, duration_ms, status_code, NULL)
    AND @extschema@.check_request_time(at, NULL)
  RETURNING id;
END;
-- ==== end security ====



-- ==== worker (issue 16) ====
-- ==== end worker ====



-- ==== parallel refresh (issue 17) ====
-- ==== end parallel refresh ====



-- ==== migration lint (issue 19) ====
-- ==== end migration lint ====



-- ==== schema correctness (issue 15) ====
-- ==== end schema correctness ====



-- ==== monitoring (issue 18) ====
-- ==== end monitoring ====
