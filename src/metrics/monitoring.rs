//! Monitoring: what Prometheus, Grafana and chat bridges read (docs/monitoring.md).
//!
//! All of it is SQL a DBA can read in sql/monitoring.sql: the `performance_analytics_live` view
//! (the rollups plus the raw tail of the current bucket), `prometheus_alert_rules()` (the rules
//! file built from slo_definitions and rollback_triggers) and `notify_alert_changes()` (NOTIFY
//! pg_runbook_alerts once per level change, called by the background worker after each rollup).
//! The exporter's queries and the dashboards live under monitoring/.

pgrx::extension_sql_file!(
    "../../sql/monitoring.sql",
    name = "monitoring",
    requires = ["metrics", "slo"]
);
