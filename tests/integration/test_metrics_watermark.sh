#!/usr/bin/env bash
# rollup_metrics()'s watermark is transaction visibility: a session that inserted a lower id and
# stays open across a rollup has its rows folded by the next rollup after it commits, exactly once.
# Also: the extension works from its own schema, and pg_cron can schedule the rollup.
. "$(dirname "$0")/lib.sh"

DB=$(fresh_db metrics_wm)
# The extension in a schema of its own, not on the search_path.
q "$DB" "DROP EXTENSION pg_runbook; CREATE SCHEMA runbook; CREATE EXTENSION pg_runbook SCHEMA runbook"
# Within pg_runbook.metrics_retention, so the rollups do not prune these rows.
AT_TEXT=$(q "$DB" "SELECT date_bin('5 minutes', now() - interval '1 hour', '2000-01-01') + interval '1 minute'")
AT="'$AT_TEXT'"

# A third session holds an advisory lock, so the writer below stays open until we release it.
bg "$DB" "SELECT pg_advisory_lock(4242), pg_sleep(300)"
wait_for "$DB" "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND granted)"
holder=$(q "$DB" "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND granted")

# The writer: inserts first (the lowest id), then waits for the lock inside its transaction.
bg "$DB" "BEGIN; SELECT runbook.record_request('/late', 30, 200, at => $AT); SELECT pg_advisory_lock(4242); COMMIT;"
wait_for "$DB" "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted)"

# Others insert higher ids and commit; a rollup runs while the writer is still open.
q "$DB" "SELECT runbook.record_request('/fast', 10, 200, at => $AT), runbook.record_request('/fast', 20, 200, at => $AT)" >/dev/null
check "the open writer's row is not visible yet" \
  "$(q "$DB" "SELECT count(*) FROM runbook.performance_metrics")" "2"
check "first rollup folds the committed rows only" "$(q "$DB" "SELECT runbook.rollup_metrics()")" "2"
check "a rollup with nothing new folds nothing" "$(q "$DB" "SELECT runbook.rollup_metrics()")" "0"
check "the floor has not passed the open writer's id" \
  "$(q "$DB" "SELECT id_floor < 1 FROM runbook.metrics_rollup_state")" "t"

# Let the writer commit.
q "$DB" "SELECT pg_terminate_backend($holder)" >/dev/null
wait_for "$DB" "SELECT count(*) = 3 FROM runbook.performance_metrics"
check "the writer's row (id 1) is now visible" "$(q "$DB" "SELECT min(id) FROM runbook.performance_metrics")" "1"
check "next rollup folds the late-committing row" "$(q "$DB" "SELECT runbook.rollup_metrics()")" "1"
check "and the one after folds nothing" "$(q "$DB" "SELECT runbook.rollup_metrics()")" "0"
check "every row is counted exactly once" \
  "$(q "$DB" "SELECT string_agg(coalesce(endpoint, 'ALL') || '=' || requests, ' ' ORDER BY endpoint NULLS LAST) FROM runbook.performance_analytics_5min")" \
  "/fast=2 /late=1 ALL=3"

# SLO functions work with the extension outside the search_path.
check "check_slo_compliance from its own schema" \
  "$(q "$DB" "SELECT count(*) FROM runbook.check_slo_compliance('15 minutes', NULL, timestamptz $AT + interval '15 minutes')")" "5"

# pg_cron can run the rollup (the cron database is postgres; run the job in ours; pg_cron 1.4
# schedules by the minute, so this waits up to a minute).
q "$DB" "SELECT runbook.record_request('/cron', 5, 200, at => $AT)" >/dev/null
q postgres "SELECT cron.schedule_in_database('rollup_metrics_test', '* * * * *', 'SELECT runbook.rollup_metrics()', '$DB')" >/dev/null 2>&1 \
  || q postgres "CREATE EXTENSION IF NOT EXISTS pg_cron; SELECT cron.schedule_in_database('rollup_metrics_test', '* * * * *', 'SELECT runbook.rollup_metrics()', '$DB')" >/dev/null
if wait_for "$DB" "SELECT EXISTS (SELECT 1 FROM runbook.performance_analytics_5min WHERE endpoint = '/cron')" 75; then
  check "pg_cron ran rollup_metrics()" "ok" "ok"
else
  check "pg_cron ran rollup_metrics()" "not folded" "ok"
fi
q postgres "SELECT cron.unschedule('rollup_metrics_test')" >/dev/null
check "still exactly once after the cron runs" \
  "$(q "$DB" "SELECT requests FROM runbook.performance_analytics_5min WHERE endpoint IS NULL")" "4"

finish
