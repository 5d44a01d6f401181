-- Deploy day starts with the pre-deployment checks and the health check.
\pset null '-'
\echo
\echo '== preflight_checks(): is the database ready for a deploy?'
SELECT "check", status, observed, threshold, left(detail, 60) AS detail FROM preflight_checks();

\echo '== the same with a stricter connection threshold, as a named argument'
SELECT "check", status, observed, threshold FROM preflight_checks(connections_warn_pct => 1) WHERE "check" = 'connections';

\echo '== assert_preflight(): returns the rows when nothing fails, raises (P0004) when something does'
SELECT count(*) AS checks_passed_or_warned FROM assert_preflight();
\set ON_ERROR_STOP 0
SELECT * FROM assert_preflight(connections_warn_pct => 0, connections_fail_pct => 0);
\set ON_ERROR_STOP 1

\echo '== health_check(): computed once, then served from shared memory for pg_runbook.health_cache_ttl'
SELECT h->>'status' AS status, h->>'cached' AS cached, h->>'cache' AS cache, h->>'checked_at' AS checked_at FROM health_check() h;
SELECT h->>'status' AS status, h->>'cached' AS cached, h->>'cache' AS cache, h->>'checked_at' AS checked_at FROM health_check() h;
SELECT jsonb_pretty(health_check() -> 'checks') AS checks, health_check() -> 'problems' AS problems;
SELECT health_live();
