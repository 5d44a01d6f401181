-- Pre-deployment checks (src/checks/preflight.rs). The functions are defined in Rust; this file documents them.

COMMENT ON FUNCTION @extschema@.runbook_setting(text) IS
'The current value of a pg_runbook.* setting as text. Check functions use it in their argument defaults, so a named argument overrides the setting for one call.';

COMMENT ON FUNCTION @extschema@.preflight_checks(float8, float8, interval, interval, interval, interval, float8, float8, interval, interval, int8, int8, int4) IS
'Pre-deployment checks, one row per check (check, status PASS|WARN|FAIL, observed, threshold, detail): connections, long-running queries, blocked lock waits, idle in transaction, cache hit ratio, replication lag, transaction ID age, invalid indexes, server version, pg_stat_statements. Each threshold is a named argument defaulting to its pg_runbook.* setting.';

COMMENT ON FUNCTION @extschema@.assert_preflight(bool, float8, float8, interval, interval, interval, interval, float8, float8, interval, interval, int8, int8, int4) IS
'Like preflight_checks(), but raises SQLSTATE P0004 naming every failing check (and, with allow_warn => false, every warning), so a deploy script run with psql -v ON_ERROR_STOP=1 stops there.';
