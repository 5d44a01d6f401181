-- preflight_checks() / assert_preflight(): the rows, the thresholds and their settings, bad input.

-- Every check, with its default threshold. Checks whose outcome does not depend on the moment
-- also pin their status and observation.
SELECT "check", threshold FROM preflight_checks() ORDER BY "check";

SELECT "check", status, observed, detail
FROM preflight_checks()
WHERE "check" IN ('replication_lag', 'server_version', 'pg_stat_statements', 'invalid_indexes')
ORDER BY "check";

-- Settings are the defaults of the named arguments, and a named argument beats the setting.
SET pg_runbook.long_query_fail = '10min';
SELECT threshold FROM preflight_checks() WHERE "check" = 'long_running_queries';
SELECT threshold FROM preflight_checks(long_query_fail => '7 minutes') WHERE "check" = 'long_running_queries';
RESET pg_runbook.long_query_fail;

-- Thresholds at zero make the connection check fail: this session is a client backend.
SELECT status FROM preflight_checks(connections_warn_pct => 0, connections_fail_pct => 0)
WHERE "check" = 'connections';

-- assert_preflight returns the rows when nothing fails ...
SELECT count(*) AS checks FROM assert_preflight(cache_hit_warn_pct => 0, cache_hit_fail_pct => 0);
-- ... raises P0004 naming each failure, and with allow_warn => false warnings count too.
SELECT regress.error_of($$SELECT * FROM assert_preflight(connections_warn_pct => 0, connections_fail_pct => 0,
                                                       cache_hit_warn_pct => 0, cache_hit_fail_pct => 0)$$);
SELECT regress.error_of($$SELECT * FROM assert_preflight(allow_warn => false, cache_hit_warn_pct => 0,
                                                       cache_hit_fail_pct => 0)$$);

-- Bad input: 22023 naming the argument.
SELECT regress.error_of($$SELECT * FROM preflight_checks(long_query_fail => '-1 minute')$$);
SELECT regress.error_of($$SELECT * FROM preflight_checks(xid_age_warn => NULL)$$);
SELECT regress.error_of($$SELECT * FROM preflight_checks(connections_fail_pct => 150)$$);
SELECT regress.error_of($$SELECT * FROM preflight_checks(long_query_warn => '10 min', long_query_fail => '1 min')$$);
SELECT regress.error_of($$SELECT * FROM assert_preflight(allow_warn => NULL)$$);
SELECT regress.error_of($$SELECT runbook_setting('work_mem')$$);
SELECT regress.error_of($$SET pg_runbook.no_such_setting = 1$$);
SELECT runbook_setting('pg_runbook.lock_wait_fail');
