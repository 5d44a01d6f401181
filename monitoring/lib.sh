# Runs postgres_exporter and Prometheus by hand (never as system services) on loopback ports, with
# their data under a directory of the caller's (the tests use .run/). Sourced after scripts/lib.sh.
MONITORING_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MONITORING_BINARIES=(prometheus promtool amtool prometheus-postgres-exporter prometheus-alertmanager)

# monitoring_available: true when every binary is there, after trying to install the packages once.
monitoring_available() {
  local b missing=0
  for b in "${MONITORING_BINARIES[@]}"; do command -v "$b" >/dev/null || missing=1; done
  if [ $missing = 1 ]; then
    WITH_MONITORING_PACKAGES=1 "$MONITORING_DIR/../scripts/setup.sh" >/dev/null 2>&1 || true
    for b in "${MONITORING_BINARIES[@]}"; do command -v "$b" >/dev/null || return 1; done
  fi
}

# wait_http URL SECONDS: polls until URL answers 200.
wait_http() {
  local i=0
  until curl -sf -o /dev/null "$1"; do
    i=$((i + 1)); [ $i -le $(($2 * 10)) ] || return 1; sleep 0.1
  done
}

# start_exporter DIR PORT DSN: postgres_exporter with monitoring/queries.yaml; pid in DIR/exporter.pid.
start_exporter() {
  local dir=$1 port=$2 dsn=$3
  mkdir -p "$dir"
  DATA_SOURCE_NAME="$dsn" prometheus-postgres-exporter \
    --web.listen-address="127.0.0.1:$port" --extend.query-path="$MONITORING_DIR/queries.yaml" \
    --disable-settings-metrics >"$dir/exporter.log" 2>&1 &
  echo $! >"$dir/exporter.pid"
  wait_http "http://127.0.0.1:$port/metrics" 30
}

# start_prometheus DIR PORT EXPORTER_PORT RULES_FILE: scrapes the exporter and evaluates the rules
# every second; pid in DIR/prometheus.pid.
start_prometheus() {
  local dir=$1 port=$2 exporter_port=$3 rules=$4
  mkdir -p "$dir/tsdb"
  cat >"$dir/prometheus.yml" <<EOT
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["$rules"]
scrape_configs:
  - job_name: pg_runbook
    static_configs: [{targets: ["127.0.0.1:$exporter_port"]}]
EOT
  prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/tsdb" \
    --web.listen-address="127.0.0.1:$port" >"$dir/prometheus.log" 2>&1 &
  echo $! >"$dir/prometheus.pid"
  wait_http "http://127.0.0.1:$port/-/ready" 60
}

# stop_started DIR: stops the processes this file started in DIR (by their recorded pids).
stop_started() {
  local f
  for f in "$1"/exporter.pid "$1"/prometheus.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    wait "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}
