#!/usr/bin/env bash
# NOTIFY pg_runbook_alerts: notify_alert_changes() sends one notification per SLO level or rollback
# trigger state change, none when nothing changed; the background worker calls it after each rollup,
# so a listening session gets each change once however many rounds pass.
. "$(dirname "$0")/lib.sh"
DB=$(fresh_db monitoring_notify)
count() { grep -c "Asynchronous notification \"pg_runbook_alerts\"" "$1" || true; }
# Two complete buckets with 20% errors: error_rate_page (2 buckets), error_rate_critical (1 bucket)
# and the rollback trigger error_rate (2 buckets) change state.
breach="SELECT record_requests(jsonb_agg(jsonb_build_object('endpoint', '/api/orders', 'duration_ms', 20,
          'status_code', CASE WHEN g % 5 = 0 THEN 500 ELSE 200 END, 'cache_hit', true,
          'at', date_bin('5 minutes', now(), '2000-01-01') - b * interval '5 minutes' + interval '1 minute')))
        FROM generate_series(1, 100) g, generate_series(1, 2) b"

# --- by hand, in one listening session
out=$RUN_DIR/monitoring-notify.out
psql -X -q -A -t -d "$DB" >"$out" 2>&1 <<EOT
LISTEN pg_runbook_alerts;
SELECT 'quiet', notify_alert_changes();
$breach;
SELECT rollup_metrics() > 0;
SELECT 'breach', notify_alert_changes();
SELECT 'again', notify_alert_changes();
UPDATE slo_definitions SET threshold = 0.5 WHERE name = 'error_rate_critical';
SELECT 'recovered', notify_alert_changes();
EOT
check "nothing breached: no notification" "$(grep '^quiet|' "$out")" "quiet|0"
check "a breach sends one notification per changed rule" "$(grep '^breach|' "$out")" "breach|3"
check "the same levels again: nothing sent" "$(grep '^again|' "$out")" "again|0"
check "a rule back to OK sends one notification" "$(grep '^recovered|' "$out")" "recovered|1"
check "the listener received exactly those four" "$(count "$out")" "4"
check "payload names the rule, its level and the previous one" \
  "$(grep -o 'payload "{[^}]*"error_rate_critical"[^}]*"CRITICAL"[^}]*"OK"' "$out" | wc -l)" "1"
check "the recovery payload says OK after CRITICAL" \
  "$(grep -c '"name" : "error_rate_critical", "level" : "OK", "previous" : "CRITICAL"' "$out")" "1"
check "a reader may not call it (operator's job)" \
  "$(psql -X -q -A -t -d "$DB" -c "SET ROLE runbook_reader" -c "SELECT notify_alert_changes()" 2>&1 | grep -o 'permission denied for function notify_alert_changes')" \
  "permission denied for function notify_alert_changes"

# --- the worker: rounds every 200 ms, each change announced once
DB=$(fresh_db monitoring_notify_worker)
q postgres "ALTER SYSTEM SET pg_runbook.database = 'monitoring_notify_worker'" >/dev/null
q postgres "ALTER SYSTEM SET pg_runbook.rollup_interval = '200ms'" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
wait_for "$DB" "SELECT count(*) > 0 FROM worker_status() WHERE database = 'monitoring_notify_worker' AND pid IS NOT NULL" 30 \
  || echo "  (worker did not start)"
listen=$RUN_DIR/monitoring-notify-worker.out
psql -X -q -A -t -d "$DB" -c "LISTEN pg_runbook_alerts" -c "SELECT pg_sleep(6)" >"$listen" 2>&1 &
listener=$!
sleep 1
q "$DB" "$breach" >/dev/null
wait_for "$DB" "SELECT count(*) = 3 FROM alert_state WHERE level <> 'OK'" 20 || echo "  (worker did not announce)"
wait "$listener"
check "worker: each of the three changes announced exactly once over many rounds" "$(count "$listen")" "3"
q postgres "ALTER SYSTEM RESET pg_runbook.database" >/dev/null
q postgres "ALTER SYSTEM RESET pg_runbook.rollup_interval" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
finish
