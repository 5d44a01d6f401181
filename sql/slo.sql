-- SLO rules and rollback triggers: configuration tables seeded with the runbook's rules.

-- Built-in rules and pg_dump. CREATE EXTENSION seeds the runbook's rules with builtin = true, and
-- pg_dump keeps only rows WHERE NOT builtin: the rules users added and the built-in ones they edited
-- (an edit clears builtin). On restore CREATE EXTENSION seeds again, and each dumped row replaces the
-- seeded row of the same name, so edits survive instead of failing on the primary key. Disable a
-- built-in rule (rollback_triggers.enabled) rather than deleting it: a deleted one comes back.
CREATE FUNCTION @extschema@.config_row_builtin_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF OLD.builtin AND NEW.builtin
       AND (to_jsonb(NEW) - 'builtin') IS DISTINCT FROM (to_jsonb(OLD) - 'builtin') THEN
      NEW.builtin := false;
    END IF;
  ELSIF NOT NEW.builtin THEN
    EXECUTE format('DELETE FROM %I.%I WHERE name = $1 AND builtin', TG_TABLE_SCHEMA, TG_TABLE_NAME)
      USING NEW.name;
  END IF;
  RETURN NEW;
END $$;
COMMENT ON FUNCTION @extschema@.config_row_builtin_guard() IS
  'Trigger of slo_definitions and rollback_triggers: an edited built-in rule becomes a user rule (kept by pg_dump), and a restored user rule replaces the built-in rule of the same name.';

CREATE TABLE @extschema@.slo_definitions (
    name                text PRIMARY KEY,
    metric              text NOT NULL CHECK (metric IN ('p50_ms', 'p95_ms', 'p99_ms', 'max_ms', 'avg_ms', 'err_rate', 'cache_hit_rate_percent')),
    comparison          text NOT NULL DEFAULT '>' CHECK (comparison IN ('>', '<')),
    threshold           double precision NOT NULL,
    level               text NOT NULL CHECK (level IN ('WARN', 'PAGE', 'CRITICAL')),
    consecutive_buckets integer NOT NULL DEFAULT 1 CHECK (consecutive_buckets >= 1),
    endpoint            text,
    description         text,
    builtin             boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE @extschema@.slo_definitions IS
  'SLO rules judged by check_slo_compliance() over 5-minute buckets: a rule is breached when its metric compares to the threshold (metric > threshold, or <) in consecutive_buckets consecutive buckets; endpoint NULL means the endpoint asked for (all endpoints by default). Edit or add rows; kept by pg_dump.';
INSERT INTO @extschema@.slo_definitions (name, metric, comparison, threshold, level, consecutive_buckets, description, builtin) VALUES
  ('p95_latency_warn',  'p95_ms',   '>', 600,  'WARN',     2, 'warn: P95 > 600 ms for 2 buckets', true),
  ('p99_latency_page',  'p99_ms',   '>', 1200, 'PAGE',     2, 'page: P99 > 1200 ms for 2 buckets', true),
  ('error_rate_page',   'err_rate', '>', 0.02, 'PAGE',     2, 'page: error rate > 2% for 2 buckets', true),
  ('p99_latency_critical', 'p99_ms', '>', 2000, 'CRITICAL', 1, 'critical: P99 > 2000 ms for 1 bucket', true),
  ('error_rate_critical', 'err_rate', '>', 0.05, 'CRITICAL', 1, 'critical: error rate > 5% for 1 bucket', true);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.slo_definitions', 'WHERE NOT builtin');
CREATE TRIGGER slo_definitions_builtin BEFORE INSERT OR UPDATE ON @extschema@.slo_definitions
  FOR EACH ROW EXECUTE FUNCTION @extschema@.config_row_builtin_guard();

CREATE TABLE @extschema@.rollback_triggers (
    name                text PRIMARY KEY,
    metric              text NOT NULL CHECK (metric IN ('p50_ms', 'p95_ms', 'p99_ms', 'max_ms', 'avg_ms', 'err_rate', 'cache_hit_rate_percent', 'mv_refresh_failures')),
    comparison          text NOT NULL DEFAULT '>' CHECK (comparison IN ('>', '<')),
    threshold           double precision NOT NULL,
    consecutive_buckets integer NOT NULL DEFAULT 1 CHECK (consecutive_buckets >= 1),
    endpoint            text,
    enabled             boolean NOT NULL DEFAULT true,
    description         text,
    builtin             boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE @extschema@.rollback_triggers IS
  'Conditions that call for a rollback, judged by should_rollback() and assert_no_rollback() over 5-minute buckets (mv_refresh_failures: failed refreshes in mv_refresh_log within the window). Edit or add rows; kept by pg_dump.';
INSERT INTO @extschema@.rollback_triggers (name, metric, comparison, threshold, consecutive_buckets, description, builtin) VALUES
  ('error_rate',          'err_rate',               '>', 0.01, 2, 'error rate above 1% for 2 consecutive 5-minute buckets', true),
  ('p99_latency',         'p99_ms',                 '>', 1200, 2, 'P99 above 1.2 s for 2 consecutive buckets', true),
  ('cache_hit_rate',      'cache_hit_rate_percent', '<', 20,   2, 'cache hit rate below 20% for 2 consecutive buckets', true),
  ('mv_refresh_failures', 'mv_refresh_failures',    '>', 2,    1, 'more than 2 materialized view refresh failures', true);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.rollback_triggers', 'WHERE NOT builtin');
CREATE TRIGGER rollback_triggers_builtin BEFORE INSERT OR UPDATE ON @extschema@.rollback_triggers
  FOR EACH ROW EXECUTE FUNCTION @extschema@.config_row_builtin_guard();

