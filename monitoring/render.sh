#!/usr/bin/env bash
# Renders docs/monitoring/<dashboard>.png from the demo cluster (make demo) with the dashboards'
# own PostgreSQL queries (monitoring/grafana/dashboards.py render), using matplotlib from PyPI in a
# virtual environment under .run/.
. "$(dirname "$0")/../scripts/lib.sh"
[ -f "$RUN_DIR/demo/env" ] || { echo "start the demo first: make demo"; exit 1; }
# shellcheck disable=SC1091
. "$RUN_DIR/demo/env"
venv=$RUN_DIR/venv-render
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import matplotlib' 2>/dev/null || "$venv/bin/pip" install -q matplotlib
mkdir -p "$REPO/docs/monitoring"
"$venv/bin/python" "$REPO/monitoring/grafana/dashboards.py" render "$REPO/docs/monitoring" \
  psql -h "$PGHOST" -p "$PGPORT" -U postgres -d runbook_demo
ls "$REPO"/docs/monitoring/*.png
