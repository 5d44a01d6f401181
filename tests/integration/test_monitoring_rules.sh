#!/usr/bin/env bash
# prometheus_alert_rules(): the shipped monitoring/alert_rules.yml is its output on a fresh install;
# promtool accepts it and its unit tests pass (alerts that must fire and must not); a rule added in
# SQL, with quotes in its name, becomes a valid alert that fires; a disabled trigger has no alert;
# amtool accepts the Alertmanager config and routes CRITICAL/PAGE to the Slack pager receiver.
. "$(dirname "$0")/lib.sh"
. "$REPO/monitoring/lib.sh"
if ! monitoring_available; then
  echo "SKIP $TEST_NAME: prometheus, prometheus-postgres-exporter or prometheus-alertmanager cannot be installed here"
  exit 0
fi
DB=$(fresh_db monitoring_rules)
work=$RUN_DIR/monitoring-rules; rm -rf "$work"; mkdir -p "$work"

q "$DB" "SELECT prometheus_alert_rules()" >"$work/fresh.yml"
check "shipped alert_rules.yml is prometheus_alert_rules() of a fresh install" \
  "$(diff "$work/fresh.yml" "$REPO/monitoring/alert_rules.yml" >/dev/null && echo same)" "same"
check "promtool check rules accepts the generated rules" \
  "$(promtool check rules "$work/fresh.yml" >/dev/null 2>&1 && echo ok)" "ok"
check "promtool test rules: alerts fire and stay silent as expected" \
  "$(cd "$REPO/monitoring" && promtool test rules alert_rules_test.yml >"$work/unit.log" 2>&1 && echo ok || cat "$work/unit.log")" "ok"

q "$DB" "INSERT INTO slo_definitions (name, metric, comparison, threshold, level, consecutive_buckets, description)
         VALUES ('checkout \"p95\" it''s slow', 'p95_ms', '>', 300, 'PAGE', 1, 'checkout: P95 > 300 ms')" >/dev/null
q "$DB" "UPDATE rollback_triggers SET enabled = false WHERE name = 'cache_hit_rate'" >/dev/null
q "$DB" "SELECT prometheus_alert_rules()" >"$work/user.yml"
check "rules with a user SLO whose name has quotes pass promtool check" \
  "$(promtool check rules "$work/user.yml" 2>&1 | grep -o 'SUCCESS: [0-9]* rules found')" "SUCCESS: 15 rules found"
check "a disabled rollback trigger has no alert" \
  "$(grep -c 'PgRunbookRollback_cache_hit_rate' "$work/user.yml" || true)" "0"
cat >"$work/user_test.yml" <<'EOT'
rule_files: [user.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'pg_runbook_slo_level{datname="app",slo="checkout \"p95\" it''s slow",severity="PAGE"}'
        values: '0 2 2'
    alert_rule_test:
      - eval_time: 0m
        alertname: PgRunbookSLO_checkout__p95__it_s_slow
        exp_alerts: []
      - eval_time: 2m
        alertname: PgRunbookSLO_checkout__p95__it_s_slow
        exp_alerts:
          - exp_labels: {datname: app, slo: "checkout \"p95\" it's slow", severity: PAGE}
            exp_annotations:
              summary: "checkout: P95 > 300 ms"
              description: "SLO checkout \"p95\" it's slow on app: p95_ms > 300 for 1 consecutive 5-minute bucket(s) (check_slo_compliance())"
EOT
check "the SQL-defined SLO's alert fires on its level metric (promtool test rules)" \
  "$(cd "$work" && promtool test rules user_test.yml >"$work/user_unit.log" 2>&1 && echo ok || cat "$work/user_unit.log")" "ok"

am=$REPO/monitoring/alertmanager.yml
check "amtool check-config accepts the Alertmanager example" \
  "$(amtool check-config "$am" >/dev/null 2>&1 && echo ok)" "ok"
check "CRITICAL routes to the Slack pager receiver" \
  "$(amtool config routes test --config.file="$am" severity=CRITICAL alertname=x datname=app 2>/dev/null)" "slack-pager"
check "PAGE routes to the Slack pager receiver" \
  "$(amtool config routes test --config.file="$am" severity=PAGE alertname=x datname=app 2>/dev/null)" "slack-pager"
check "WARN goes to the warnings channel, not the pager" \
  "$(amtool config routes test --config.file="$am" severity=WARN alertname=x datname=app 2>/dev/null)" "slack-warnings"

check "reader role may call prometheus_alert_rules()" \
  "$(q "$DB" "SET ROLE runbook_reader; SELECT length(prometheus_alert_rules()) > 0")" "t"
finish
