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
-- Pure computations over their arguments (sketch math, request validation): anyone.
GRANT EXECUTE ON FUNCTION
    @extschema@.health_live,
    @extschema@.runbook_setting,
    @extschema@.check_request, @extschema@.check_request_time,
    @extschema@.sketch_quantile, @extschema@.sketch_stats,
    @extschema@.sketch_merge, @extschema@.sketch_count,
    @extschema@.sketch_mean, @extschema@.sketch_max, @extschema@.sketch_errors,
    @extschema@.sketch_cache_hits, @extschema@.sketch_cache_lookups,
    @extschema@.rollup_rows
TO PUBLIC;
GRANT EXECUTE ON ROUTINE
    @extschema@.request_sketch,
    @extschema@.sketch_union,
    @extschema@.request_rollup,
    @extschema@.request_sketch_trans,
    @extschema@.sketch_union_trans,
    @extschema@.sketch_combine, @extschema@.sketch_final,
    @extschema@.sketch_serialize, @extschema@.sketch_deserialize,
    @extschema@.request_rollup_trans,
    @extschema@.rollup_combine, @extschema@.rollup_final,
    @extschema@.rollup_serialize, @extschema@.rollup_deserialize
TO PUBLIC;

-- runbook_reader: checks and reports. Read-only; a check of the caller's query
-- (check_query_plan) runs it through the read-only query guard.
GRANT EXECUTE ON FUNCTION
    @extschema@.preflight_checks, @extschema@.assert_preflight,
    @extschema@.health_check,
    @extschema@.analyze_index_usage, @extschema@.find_redundant_indexes,
    @extschema@.find_unused_indexes, @extschema@.find_missing_fk_indexes,
    @extschema@.index_build_progress,
    @extschema@.verify_migration_success, @extschema@.assert_migration_success,
    @extschema@.verify_migration, @extschema@.check_query_plan,
    @extschema@.schema_diff, @extschema@.rollback_ddl,
    @extschema@.verify_materialized_view_indexes, @extschema@.refresh_status,
    @extschema@.check_slo_compliance, @extschema@.should_rollback, @extschema@.assert_no_rollback,
    @extschema@.slo_error_budget,
    @extschema@.cache_stats, @extschema@.worker_status,
    @extschema@.check_data_integrity, @extschema@.validate_security_configuration,
    @extschema@.analyze_partition_distribution, @extschema@.generate_compliance_report
TO runbook_reader;
GRANT SELECT ON
    @extschema@.performance_analytics_5min, @extschema@.api_metrics_5m,
    @extschema@.mv_refresh_log, @extschema@.mv_refresh_runs, @extschema@.mv_refresh_sources,
    @extschema@.slo_definitions, @extschema@.rollback_triggers, @extschema@.retention_policies,
    @extschema@.schema_baselines, @extschema@.schema_baseline_objects,
    @extschema@.migration_expectations,
    @extschema@.metrics_rollup_state, @extschema@.metrics_rollup_log,
    @extschema@.cache_entries
TO runbook_reader;

-- runbook_operator: acts. The query cache's tables are not granted: an entry belongs to the
-- role that stored it and the cache functions read and write them as the extension's owner.
GRANT EXECUTE ON FUNCTION
    @extschema@.cache_put, @extschema@.cache_get, @extschema@.cached_query,
    @extschema@.invalidate_cache, @extschema@.invalidate_cache_tag,
    @extschema@.clean_expired_cache, @extschema@.drain_cache_invalidation_queue,
    @extschema@.warm_cache_top_queries, @extschema@.cache_wake_worker,
    @extschema@.cache_invalidate_on_change, @extschema@.cache_invalidate_off,
    @extschema@.record_request, @extschema@.record_requests, @extschema@.rollup_metrics,
    @extschema@.refresh_materialized_views, @extschema@.refresh_materialized_views_staggered,
    @extschema@.schema_baseline, @extschema@.expect_migration
TO runbook_operator;
GRANT SELECT, INSERT, DELETE ON @extschema@.performance_metrics TO runbook_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    @extschema@.performance_analytics_5min, @extschema@.metrics_rollup_state,
    @extschema@.metrics_rollup_log,
    @extschema@.cache_invalidation_queue, @extschema@.cache_invalidation_rejected,
    @extschema@.schema_baselines, @extschema@.schema_baseline_objects,
    @extschema@.migration_expectations
TO runbook_operator;

-- runbook_admin: configures, and runs retention (which drops and deletes application data).
GRANT EXECUTE ON FUNCTION
    @extschema@.apply_data_retention_policies, @extschema@.drop_old_partitions
TO runbook_admin;
GRANT INSERT, UPDATE, DELETE ON
    @extschema@.slo_definitions, @extschema@.rollback_triggers, @extschema@.retention_policies
TO runbook_admin;
GRANT DELETE ON @extschema@.mv_refresh_log TO runbook_admin;  -- prune_mv_refresh_log()
-- ==== end security ====



-- ==== worker (issue 16) ====
GRANT EXECUTE ON FUNCTION @extschema@.drain_cache_invalidation_batch(integer, bigint, boolean) TO runbook_operator;
GRANT EXECUTE ON PROCEDURE @extschema@.drain_cache_invalidation_queue_batches(integer, integer, bigint) TO runbook_operator;
-- ==== end worker ====



-- ==== parallel refresh (issue 17) ====
-- Refreshing acts (each view as the caller, who must own it or be a member of its owner role);
-- reading runs and the log reports; pruning follows a server setting and is the admin's.
GRANT EXECUTE ON FUNCTION @extschema@.refresh_materialized_views_staggered(text, text, interval, boolean, interval, interval, boolean) TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.refresh_materialized_views() TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.refresh_analytics_views_concurrent(text, text, integer, interval, boolean, interval, interval, boolean) TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.verify_materialized_view_indexes(text, text) TO runbook_reader;
GRANT EXECUTE ON FUNCTION @extschema@.refresh_status() TO runbook_reader;
GRANT EXECUTE ON FUNCTION @extschema@.prune_mv_refresh_log() TO runbook_admin;
GRANT SELECT ON @extschema@.mv_refresh_log, @extschema@.mv_refresh_runs TO runbook_reader;
-- ==== end parallel refresh ====



-- ==== migration lint (issue 19) ====
GRANT EXECUTE ON FUNCTION @extschema@.lint_migration(text, bigint, bigint) TO runbook_reader;
GRANT EXECUTE ON FUNCTION @extschema@.assert_migration_lint(text, bigint, bigint) TO runbook_reader;
GRANT EXECUTE ON FUNCTION @extschema@.check_migration_preconditions(text, bigint, interval) TO runbook_reader;
GRANT EXECUTE ON PROCEDURE @extschema@.run_ddl(text, interval, integer, interval) TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.run_ddl_statement_check(text, interval, integer, interval) TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.run_ddl_blockers(text) TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.run_ddl_log_attempt(text, integer, text, double precision, integer[], text, text) TO runbook_operator;
GRANT SELECT ON @extschema@.ddl_attempt_log TO runbook_operator;
-- ==== end migration lint ====



-- ==== schema correctness (issue 15) ====
-- Checks and reports: runbook_reader. Baselines and expectations: runbook_operator. Accepting
-- findings and retention (which drops data): runbook_admin.
GRANT EXECUTE ON FUNCTION @extschema@.analyze_index_usage(), @extschema@.find_redundant_indexes(),
    @extschema@.find_unused_indexes(bigint, interval), @extschema@.find_missing_fk_indexes(),
    @extschema@.index_build_progress(), @extschema@.verify_migration_success(),
    @extschema@.assert_migration_success(text), @extschema@.verify_migration(text),
    @extschema@.check_query_plan(text, text, double precision), @extschema@.schema_diff(text),
    @extschema@.rollback_ddl(text), @extschema@.validate_security_configuration(),
    @extschema@.analyze_partition_distribution(double precision),
    @extschema@.check_data_integrity(integer, double precision, double precision),
    @extschema@.generate_compliance_report(text, date)
    TO runbook_reader;
GRANT SELECT ON @extschema@.migration_expectations, @extschema@.schema_baselines,
    @extschema@.schema_baseline_objects, @extschema@.accepted_findings, @extschema@.retention_policies
    TO runbook_reader;
GRANT EXECUTE ON FUNCTION @extschema@.schema_baseline(text, boolean), @extschema@.expect_migration(text, jsonb)
    TO runbook_operator;
GRANT INSERT, UPDATE, DELETE ON @extschema@.migration_expectations, @extschema@.schema_baselines,
    @extschema@.schema_baseline_objects TO runbook_operator;
GRANT EXECUTE ON FUNCTION @extschema@.accept_finding(text, text, text, timestamptz),
    @extschema@.withdraw_finding(text, text), @extschema@.apply_data_retention_policies(boolean),
    @extschema@.drop_old_partitions(integer, regclass, boolean)
    TO runbook_admin;
GRANT INSERT, UPDATE, DELETE ON @extschema@.accepted_findings, @extschema@.retention_policies TO runbook_admin;
-- ==== end schema correctness ====



-- ==== monitoring (issue 18) ====
-- The monitoring objects (sql/monitoring.sql).
GRANT EXECUTE ON FUNCTION @extschema@.prometheus_alert_rules() TO runbook_reader;
GRANT SELECT ON @extschema@.performance_analytics_live TO runbook_reader;
GRANT EXECUTE ON FUNCTION @extschema@.notify_alert_changes() TO runbook_operator;
GRANT SELECT ON @extschema@.alert_state TO runbook_reader;
-- (What monitoring/queries.yaml and the dashboards read besides these, the security section
-- above grants to runbook_reader.)
-- ==== end monitoring ====
