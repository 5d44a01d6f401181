#!/usr/bin/env bash
# make demo: a throwaway cluster under .run/demo with pg_runbook, pg_stat_statements and pg_cron
# preloaded, a demo database with a small application and some traffic, and the runbook run on it.
#   scripts/demo.sh        set up (again) and run the demo
#   scripts/demo.sh stop   stop the demo cluster
. "$(dirname "$0")/lib.sh"
DB=runbook_demo

if [ "${1:-}" = stop ]; then
  cluster_stop demo
  say "demo cluster stopped (its files stay in $RUN_DIR/demo; make clean removes them)"
  exit 0
fi

cluster_start demo "$PRELOAD_ALL" "cron.database_name = '$DB'" "pg_runbook.database = '$DB'"
say "demo cluster on port $PGPORT (socket $PGHOST)"
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
q "$DB" "CREATE EXTENSION pg_runbook; CREATE EXTENSION pg_stat_statements; CREATE EXTENSION pg_cron;" >/dev/null

for f in "$REPO"/demo/*.sql; do
  psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f "$f"
done

cat <<EOT

$(say "the demo cluster is running")
  connect:  psql -h $PGHOST -p $PGPORT -U postgres $DB
            (or over TCP: psql -h 127.0.0.1 -p $PGPORT -U postgres $DB)
  stop:     make demo-stop

$(say "Prometheus and Grafana (docs/monitoring.md)")
  exporter role:  psql -h $PGHOST -p $PGPORT -U postgres $DB -c "CREATE ROLE runbook_exporter LOGIN; GRANT runbook_reader, pg_monitor TO runbook_exporter"
  exporter:       DATA_SOURCE_NAME='postgresql://runbook_exporter@127.0.0.1:$PGPORT/$DB?sslmode=disable' \\
                    prometheus-postgres-exporter --extend.query-path=$REPO/monitoring/queries.yaml --web.listen-address=127.0.0.1:9187
  alert rules:    psql -At -h $PGHOST -p $PGPORT -U postgres $DB -c 'SELECT prometheus_alert_rules()' > pg_runbook_rules.yml
  prometheus.yml: rule_files: [pg_runbook_rules.yml]; scrape_configs: [{job_name: pg_runbook, static_configs: [{targets: ['127.0.0.1:9187']}]}]
  Grafana:        PostgreSQL data source host 127.0.0.1:$PGPORT, database $DB, user runbook_exporter (runbook_reader, pg_monitor),
                  a Prometheus data source, then import $REPO/monitoring/grafana/*.json
  alerts by NOTIFY: psql -h $PGHOST -p $PGPORT -U postgres $DB -c 'LISTEN pg_runbook_alerts' -c 'SELECT pg_sleep(300)'
EOT
