-- Who may call what: the privilege model of docs/security.md, applied after every object exists.
-- First PUBLIC loses EXECUTE on every function of the extension; then each role gets what its job
-- needs. A function missing from every list below is callable by superusers and the owner only.
DO $revoke$
DECLARE
    f pg_catalog.regprocedure;
BEGIN
    FOR f IN
        SELECT d.objid::pg_catalog.regprocedure
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
        WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
          AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
          AND d.deptype OPERATOR(pg_catalog.=) 'e'
          AND e.extname OPERATOR(pg_catalog.=) 'pg_runbook'
    LOOP
        EXECUTE pg_catalog.format('REVOKE EXECUTE ON ROUTINE %s FROM PUBLIC', f);
    END LOOP;
END
$revoke$;

-- ==== security (issue 14) ====
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
-- The monitoring objects (sql/monitoring.sql).
GRANT EXECUTE ON FUNCTION @extschema@.prometheus_alert_rules() TO runbook_reader;
GRANT SELECT ON @extschema@.performance_analytics_live TO runbook_reader;
GRANT EXECUTE ON FUNCTION @extschema@.notify_alert_changes() TO runbook_operator;
GRANT SELECT ON @extschema@.alert_state TO runbook_reader;
-- What monitoring/queries.yaml and the Grafana dashboards read, so that an exporter login role
-- that is a member of runbook_reader can scrape (the security section grants these to readers
-- too; a second GRANT is harmless).
GRANT EXECUTE ON ROUTINE @extschema@.cache_stats(), @extschema@.worker_status(),
    @extschema@.check_slo_compliance(interval, text, timestamptz),
    @extschema@.should_rollback(interval, timestamptz),
    @extschema@.slo_error_budget(double precision, interval, timestamptz),
    @extschema@.health_check(), @extschema@.preflight_checks, @extschema@.runbook_setting(text),
    @extschema@.request_sketch(double precision, integer, boolean), @extschema@.sketch_stats(bytea)
  TO runbook_reader;
GRANT SELECT ON @extschema@.performance_analytics_5min, @extschema@.api_metrics_5m,
    @extschema@.slo_definitions, @extschema@.rollback_triggers, @extschema@.metrics_rollup_state,
    @extschema@.mv_refresh_log, @extschema@.metrics_rollup_log, @extschema@.query_cache,
    @extschema@.cache_invalidation_queue
  TO runbook_reader;
-- ==== end monitoring ====
