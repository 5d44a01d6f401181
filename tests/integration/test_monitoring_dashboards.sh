#!/usr/bin/env bash
# Every PostgreSQL panel of the four Grafana dashboards (monitoring/grafana/*.json) runs, with
# Grafana's macros expanded for the last 6 hours, as a runbook_reader member against a database with real
# traffic, rollups, refreshes (one failing) and cache entries, and returns rows: no panel ships
# broken. performance_analytics_live shows the current, not yet rolled-up bucket from raw rows.
. "$(dirname "$0")/lib.sh"
DB=$(fresh_db monitoring_dash)
fresh=$RUN_DIR/monitoring-dashboards; rm -rf "$fresh"; mkdir -p "$fresh"
python3 "$REPO/monitoring/grafana/dashboards.py" build "$fresh"
check "the dashboard JSON files are what dashboards.py build writes" \
  "$(diff -r -x '*.py' -x '*.png' -x __pycache__ "$fresh" "$REPO/monitoring/grafana" >/dev/null && echo same)" "same"

q "$DB" "SELECT record_requests(jsonb_agg(jsonb_build_object(
           'endpoint', '/api/' || (ARRAY['orders', 'users'])[1 + g % 2], 'duration_ms', 10 + (g * 37) % 900,
           'status_code', CASE WHEN g % 17 = 0 THEN 503 ELSE 200 END, 'cache_hit', g % 3 <> 0,
           'at', now() - interval '2 hours' + g * interval '7 seconds')))
         FROM generate_series(1, 1000) g;
         SELECT rollup_metrics();" >/dev/null
# Traffic after the rollup, in the current bucket: not in performance_analytics_5min yet.
q "$DB" "SELECT record_request('/api/orders', 42, 200, true) FROM generate_series(1, 7)" >/dev/null
check "the live view shows the current bucket from raw rows, all endpoints" \
  "$(q "$DB" "SELECT requests - (SELECT count(*) FROM performance_metrics
                                  WHERE created_at >= date_bin('5 minutes', now(), '2000-01-01')), rolled_up
              FROM performance_analytics_live
              WHERE endpoint IS NULL AND bucket = date_bin('5 minutes', now(), '2000-01-01')")" "0|f"
check "the live view takes complete buckets from the rollups" \
  "$(q "$DB" "SELECT count(*) = (SELECT count(*) FROM performance_analytics_5min p, metrics_rollup_state s
                                 WHERE p.bucket < date_bin('5 minutes', s.last_run_at, '2000-01-01'))
              FROM performance_analytics_live WHERE rolled_up")" "t"
check "per-endpoint and all-endpoint rows of the live view agree" \
  "$(q "$DB" "SELECT bool_and(a.requests = (SELECT sum(e.requests) FROM performance_analytics_live e
                                            WHERE e.bucket = a.bucket AND e.endpoint IS NOT NULL))
              FROM performance_analytics_live a WHERE a.endpoint IS NULL")" "t"

q "$DB" "CREATE TABLE public.divisor (d int); INSERT INTO public.divisor VALUES (1);
         CREATE MATERIALIZED VIEW public.totals AS SELECT 1 AS one;
         CREATE MATERIALIZED VIEW public.ratio AS SELECT 10 / d AS r FROM public.divisor;
         UPDATE public.divisor SET d = 0;" >/dev/null
q "$DB" "SELECT count(*) FROM refresh_materialized_views()" >/dev/null 2>&1 || true
check "a refresh failed for real (division by zero)" \
  "$(q "$DB" "SELECT count(*) > 0 FROM mv_refresh_log WHERE status = 'failed'")" "t"
q "$DB" "SELECT cache_put('user:' || g, '{\"a\":1}', '1 hour', '{users}') FROM generate_series(1, 3) g;
         SELECT cache_get('user:1'); SELECT notify_alert_changes();" >/dev/null

# The data source role docs/monitoring.md describes: runbook_reader, and pg_monitor so that the
# preflight and health panels can see every session and setting.
q "$DB" "DO \$\$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'runbook_grafana') THEN CREATE ROLE runbook_grafana LOGIN; END IF;
         END \$\$;
         GRANT runbook_reader, pg_monitor TO runbook_grafana;" >/dev/null
# Grafana's "now" is when the panel runs; a minute ahead keeps rows of this very second in range.
to=$(date -u -d '+1 minute' +%Y-%m-%dT%H:%M:%SZ); from=$(date -u -d '-6 hours' +%Y-%m-%dT%H:%M:%SZ)
panels=0
while IFS= read -r line; do
  panels=$((panels + 1))
  title=$(python3 -c 'import json,sys; q=json.loads(sys.argv[1]); print(q["dashboard"] + ": " + q["panel"] + " (" + q["ref"] + ")")' "$line")
  sql=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["sql"])' "$line")
  if out=$(psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$DB" -c "SET ROLE runbook_grafana" -c "$sql" 2>&1); then
    check "panel returns rows: $title" "$([ -n "$out" ] && echo rows || echo empty)" "rows"
  else
    check "panel SQL runs: $title" "$out" "(no error)"
  fi
done < <(python3 "$REPO/monitoring/grafana/dashboards.py" sql "$from" "$to")
check "PostgreSQL panels found in the four dashboards" "$([ $panels -ge 21 ] && echo yes || echo "$panels")" "yes"
finish
