#!/usr/bin/env bash
# End to end: a real postgres_exporter with monitoring/queries.yaml, connected as a login role that
# is only a member of runbook_reader (and pg_monitor), scraped by a real Prometheus that evaluates
# prometheus_alert_rules(); traffic breaching the error-rate SLO makes the CRITICAL alert fire, seen
# through Prometheus's HTTP API, while the two-bucket PAGE rule stays silent. Loopback ports only,
# every wait bounded.
. "$(dirname "$0")/lib.sh"
. "$REPO/monitoring/lib.sh"
if ! monitoring_available; then
  echo "SKIP $TEST_NAME: prometheus, prometheus-postgres-exporter or prometheus-alertmanager cannot be installed here"
  exit 0
fi
DB=$(fresh_db monitoring_e2e)
work=$RUN_DIR/monitoring-e2e; rm -rf "$work"; mkdir -p "$work"
trap 'stop_started "$work"' EXIT

q "$DB" "DO \$\$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'runbook_exporter') THEN CREATE ROLE runbook_exporter LOGIN; END IF;
         END \$\$;
         GRANT runbook_reader, pg_monitor TO runbook_exporter;
         CREATE MATERIALIZED VIEW public.daily_totals AS SELECT 1 AS one;" >/dev/null
# (Committed first: the refresh runs in a background worker.)
q "$DB" "SELECT count(*) FROM refresh_materialized_views()" >/dev/null
# One complete bucket (the previous one) with 20% errors: over error_rate_critical (5%, 1 bucket),
# but error_rate_page needs 2 consecutive buckets.
q "$DB" "SELECT record_requests(jsonb_agg(jsonb_build_object(
           'endpoint', '/api/orders', 'duration_ms', 20 + g, 'status_code', CASE WHEN g % 5 = 0 THEN 500 ELSE 200 END,
           'cache_hit', g % 2 = 0,
           'at', date_bin('5 minutes', now(), '2000-01-01') - interval '150 seconds')))
         FROM generate_series(1, 200) g;
         SELECT rollup_metrics();" >/dev/null
check "the database judges error_rate_critical CRITICAL" \
  "$(q "$DB" "SELECT level FROM check_slo_compliance() WHERE slo = 'error_rate_critical'")" "CRITICAL"
q "$DB" "SELECT prometheus_alert_rules()" >"$work/rules.yml"

exporter_port=$(free_port)
start_exporter "$work" "$exporter_port" \
  "postgresql://runbook_exporter@127.0.0.1:$PGPORT/$DB?sslmode=disable" \
  || { echo "exporter did not start"; cat "$work/exporter.log"; exit 1; }
curl -sf "http://127.0.0.1:$exporter_port/metrics" >"$work/scrape.txt"
check "every custom query ran without error as a runbook_reader member (pg_exporter_last_scrape_error 0)" \
  "$(grep '^pg_exporter_last_scrape_error ' "$work/scrape.txt" | awk '{print $2}')" "0"
for family in pg_runbook_cache_queue_depth pg_runbook_cache_oldest_event_age_seconds pg_runbook_cache_events_drained_total \
              pg_runbook_cache_entries pg_runbook_cache_hit_rate_pct pg_runbook_worker_up pg_runbook_worker_last_drain_age_seconds \
              pg_runbook_slo_level pg_runbook_rollback_trigger_fired pg_runbook_error_budget_burn_rate_1h \
              pg_runbook_refresh_failures_1h pg_runbook_refresh_last_refresh_age_seconds pg_runbook_requests_requests \
              pg_runbook_requests_err_rate pg_runbook_requests_p50_ms pg_runbook_requests_p95_ms pg_runbook_requests_p99_ms \
              pg_runbook_preflight_status pg_runbook_health_status pg_runbook_rollup_last_run_age_seconds; do
  check "exporter serves $family" "$(grep -c "^$family{" "$work/scrape.txt" | awk '{print ($1 > 0) ? "yes" : "no"}')" "yes"
done
# Every metric a Prometheus panel of the dashboards or an alert rule reads is one the exporter serves.
for metric in $( (python3 "$REPO/monitoring/grafana/dashboards.py" promql; grep 'expr:' "$work/rules.yml") \
                 | grep -o 'pg_runbook_[a-z0-9_]*' | sort -u); do
  check "metric $metric of the dashboards and rules is exported" "$(grep -c "^$metric{" "$work/scrape.txt" | awk '{print ($1 > 0) ? "yes" : "no"}')" "yes"
done
check "SLO level of error_rate_critical exported as 3" \
  "$(grep '^pg_runbook_slo_level{' "$work/scrape.txt" | grep 'slo="error_rate_critical"' | awk '{print $2}')" "3"
check "requests of the last complete bucket, all endpoints" \
  "$(grep '^pg_runbook_requests_requests{' "$work/scrape.txt" | grep 'endpoint="\*"' | awk '{print $2}')" "200"

prom_port=$(free_port)
start_prometheus "$work" "$prom_port" "$exporter_port" "$work/rules.yml" \
  || { echo "prometheus did not start"; cat "$work/prometheus.log"; exit 1; }
api=http://127.0.0.1:$prom_port/api/v1
firing() { # firing ALERTNAME: prints yes when Prometheus reports the alert firing
  curl -sf "$api/alerts" | python3 -c 'import json,sys
alerts = json.load(sys.stdin)["data"]["alerts"]
print("yes" if any(a["labels"]["alertname"] == sys.argv[1] and a["state"] == "firing" for a in alerts) else "no")' "$1"
}
state="no"
for _ in $(seq 1 60); do
  state=$(firing PgRunbookSLO_error_rate_critical || echo no)
  [ "$state" = yes ] && break
  sleep 1
done
check "Prometheus reports PgRunbookSLO_error_rate_critical firing (HTTP API)" "$state" "yes"
check "the alert carries severity CRITICAL and the database" \
  "$(curl -sf "$api/alerts" | python3 -c 'import json,sys
a = [a for a in json.load(sys.stdin)["data"]["alerts"] if a["labels"]["alertname"] == "PgRunbookSLO_error_rate_critical"][0]
print(a["labels"]["severity"], a["labels"]["datname"])')" "CRITICAL $DB"
check "the two-bucket PAGE rule does not fire on one bad bucket" "$(firing PgRunbookSLO_error_rate_page)" "no"
check "Prometheus's rule health is ok for every generated rule" \
  "$(curl -sf "$api/rules" | python3 -c 'import json,sys
rules = [r for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]]
print(len(rules), sorted({r["health"] for r in rules}))')" "15 ['ok']"
finish
