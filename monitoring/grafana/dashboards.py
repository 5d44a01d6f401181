#!/usr/bin/env python3
"""pg_runbook's four Grafana dashboards, written from one description so that the JSON files, the
test that runs every panel's SQL and the PNG pictures in docs/ all use the same queries.

  dashboards.py build [OUTDIR]        rewrite monitoring/grafana/*.json (or write them to OUTDIR)
  dashboards.py sql FROM TO           print every PostgreSQL panel's SQL with Grafana's macros
                                      expanded for the time range, as JSON lines
                                      {"dashboard", "panel", "sql"}
  dashboards.py promql                print every Prometheus panel's expression, one a line
  dashboards.py render OUTDIR PSQL..  PNG per dashboard from the same queries (needs matplotlib)

Panels read the rollups through performance_analytics_live (the current bucket included) with
Grafana's PostgreSQL data source, and the exporter's metrics (monitoring/queries.yaml) with the
Prometheus one. The extension's schema must be on the data source role's search_path.
"""
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
PG = {"type": "grafana-postgresql-datasource", "uid": "${DS_POSTGRES}"}
PROM = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


def sql_panel(title, *sqls, kind="timeseries"):
    """A panel of one or more PostgreSQL queries (targets A, B, ...) drawn together."""
    return {"title": title, "kind": kind, "sql": [" ".join(q.split()) for q in sqls],
            "format": "time_series" if kind == "timeseries" else "table"}


def prom_panel(title, *exprs, kind="timeseries"):
    return {"title": title, "kind": kind, "prom": list(exprs)}


# SLO and rollback thresholds, drawn as a flat line per rule over the same buckets.
def thresholds(metrics, tables=("slo_definitions",), scale=""):
    wanted = ", ".join(f"'{m}'" for m in metrics)
    parts = [f"SELECT $__time(b.bucket), s.threshold{scale} AS value, '{t}: ' || s.name AS metric "
             f"FROM performance_analytics_live b JOIN {t} s ON s.metric IN ({wanted}) "
             f"WHERE b.endpoint IS NULL AND $__timeFilter(b.bucket)" for t in tables]
    return " UNION ALL ".join(parts) + " ORDER BY 1"


DASHBOARDS = {
    "worker-performance": ("pg_runbook: worker performance", [
        sql_panel("Workers", "SELECT database, state, pid, last_drain_at, events_drained_total, "
                  "last_error, last_error_at, naptime_ms FROM worker_status()", kind="table"),
        sql_panel("Rollup runs: raw rows folded and pruned",
                  "SELECT $__time(ran_at), folded, pruned FROM metrics_rollup_log "
                  "WHERE $__timeFilter(ran_at) ORDER BY 1"),
        sql_panel("Invalidation queue now", "SELECT queue_depth, "
                  "COALESCE(EXTRACT(epoch FROM oldest_event_age), 0) AS oldest_event_age_s, "
                  "events_drained_total FROM cache_stats()", kind="stat"),
        prom_panel("Worker up", "pg_runbook_worker_up"),
        prom_panel("Events drained per second", "rate(pg_runbook_cache_events_drained_total[5m])"),
        prom_panel("Queue depth and oldest event age",
                   "pg_runbook_cache_queue_depth", "pg_runbook_cache_oldest_event_age_seconds"),
        prom_panel("Seconds since the last drain and rollup",
                   "pg_runbook_worker_last_drain_age_seconds", "pg_runbook_rollup_last_run_age_seconds"),
    ]),
    "database-metrics": ("pg_runbook: database metrics", [
        sql_panel("Latency percentiles per 5-minute bucket (ms), SLO thresholds drawn",
                  "SELECT $__time(bucket), p50_ms, p95_ms, p99_ms FROM performance_analytics_live "
                  "WHERE endpoint IS NULL AND $__timeFilter(bucket) ORDER BY 1",
                  thresholds(("p95_ms", "p99_ms"))),
        sql_panel("Requests and errors per bucket",
                  "SELECT $__time(bucket), requests, errors FROM performance_analytics_live "
                  "WHERE endpoint IS NULL AND $__timeFilter(bucket) ORDER BY 1"),
        sql_panel("Materialized view refresh durations (ms)",
                  "SELECT $__time(started_at), duration_ms AS value, schemaname || '.' || matview AS metric "
                  "FROM mv_refresh_log WHERE $__timeFilter(started_at) ORDER BY 1"),
        sql_panel("Refresh failures", "SELECT started_at, schemaname, matview, error FROM mv_refresh_log "
                  "WHERE status = 'failed' AND $__timeFilter(started_at) ORDER BY started_at DESC LIMIT 50",
                  kind="table"),
        sql_panel("Pre-deployment checks", "SELECT \"check\", status, observed, threshold FROM preflight_checks()",
                  kind="table"),
        sql_panel("Health", "SELECT health_check() ->> 'status' AS status", kind="stat"),
        prom_panel("Preflight status per check (0 PASS, 1 WARN, 2 FAIL)", "pg_runbook_preflight_status"),
    ]),
    "cache-analytics": ("pg_runbook: cache analytics", [
        sql_panel("Cache hit rate per bucket (%), rollback threshold drawn",
                  "SELECT $__timeGroupAlias(bucket, '5m'), avg(cache_hit_rate_percent) AS hit_rate_percent "
                  "FROM performance_analytics_live WHERE endpoint IS NULL AND $__timeFilter(bucket) "
                  "GROUP BY 1 ORDER BY 1",
                  thresholds(("cache_hit_rate_percent",), ("rollback_triggers",))),
        sql_panel("Query cache now", "SELECT entries, expired_entries, hits, misses, hit_rate_pct, queue_depth "
                  "FROM cache_stats()", kind="stat"),
        sql_panel("Most used cache entries", "SELECT cache_key, owner_role, hits, tags, created_at, expires_at "
                  "FROM cache_entries ORDER BY hits DESC LIMIT 20", kind="table"),
        prom_panel("Cache hit rate since server start (%)", "pg_runbook_cache_hit_rate_pct"),
        prom_panel("Cache lookups per second", "rate(pg_runbook_cache_hits[5m])", "rate(pg_runbook_cache_misses[5m])"),
    ]),
    "error-tracking": ("pg_runbook: error tracking", [
        sql_panel("Error rate per bucket (%), SLO and rollback thresholds drawn",
                  "SELECT $__time(bucket), err_rate * 100 AS error_rate_percent FROM performance_analytics_live "
                  "WHERE endpoint IS NULL AND $__timeFilter(bucket) ORDER BY 1",
                  thresholds(("err_rate",), ("slo_definitions", "rollback_triggers"), " * 100")),
        sql_panel("Errors by endpoint", "SELECT endpoint, sum(requests) AS requests, sum(errors) AS errors, "
                  "round((100 * sum(errors)::float8 / NULLIF(sum(requests), 0))::numeric, 2) AS error_rate_percent "
                  "FROM performance_analytics_live WHERE endpoint IS NOT NULL AND $__timeFilter(bucket) "
                  "GROUP BY endpoint ORDER BY errors DESC", kind="table"),
        sql_panel("SLO compliance (last 15 minutes)",
                  "SELECT slo, level, observed, threshold, breached_buckets, required_buckets FROM check_slo_compliance()",
                  kind="table"),
        sql_panel("Rollback triggers", "SELECT \"trigger\", fired, observed, threshold FROM should_rollback()",
                  kind="table"),
        sql_panel("Error budget (99.9%, 30 days)", "SELECT budget_consumed, burn_rate_5m, burn_rate_1h, burn_rate_6h, "
                  "fast_burn, slow_burn FROM slo_error_budget()", kind="stat"),
        sql_panel("Alert level changes (notify_alert_changes)",
                  "SELECT changed_at, kind, name, level FROM alert_state ORDER BY changed_at DESC", kind="table"),
        prom_panel("SLO level per rule (0 OK .. 3 CRITICAL)", "pg_runbook_slo_level"),
        prom_panel("Rollback triggers fired", "pg_runbook_rollback_trigger_fired"),
    ]),
}

def grafana_json(uid, title, panels):
    out = []
    for i, p in enumerate(panels):
        panel = {"id": i + 1, "title": p["title"], "type": p["kind"],
                 "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)}}
        if "sql" in p:
            panel["datasource"] = PG
            panel["targets"] = [{"refId": chr(65 + j), "datasource": PG, "editorMode": "code",
                                 "rawQuery": True, "format": p["format"], "rawSql": q}
                                for j, q in enumerate(p["sql"])]
        else:
            panel["datasource"] = PROM
            panel["targets"] = [{"refId": chr(65 + j), "datasource": PROM, "expr": e}
                                for j, e in enumerate(p["prom"])]
        out.append(panel)
    return {
        "__inputs": [
            {"name": "DS_POSTGRES", "label": "PostgreSQL (pg_runbook)", "type": "datasource",
             "pluginId": "grafana-postgresql-datasource"},
            {"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource", "pluginId": "prometheus"},
        ],
        "uid": "pg-runbook-" + uid, "title": title, "tags": ["pg_runbook"], "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"}, "refresh": "1m", "panels": out,
    }


def build(outdir=HERE):
    for uid, (title, panels) in DASHBOARDS.items():
        with open(os.path.join(outdir, uid + ".json"), "w") as f:
            json.dump(grafana_json(uid, title, panels), f, indent=2)
            f.write("\n")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def expand(sql, t_from, t_to):
    """Grafana's PostgreSQL macros, as Grafana expands them."""
    f, t = t_from.strftime("%Y-%m-%dT%H:%M:%SZ"), t_to.strftime("%Y-%m-%dT%H:%M:%SZ")

    def seconds(spec):
        m = re.fullmatch(r"'?(\d+)([smhd])'?", spec.strip())
        return int(m.group(1)) * _UNITS[m.group(2)]

    sql = re.sub(r"\$__timeGroupAlias\(([^,]+),([^)]+)\)",
                 lambda m: f'floor(extract(epoch from {m.group(1)})/{seconds(m.group(2))})*{seconds(m.group(2))} AS "time"', sql)
    sql = re.sub(r"\$__timeGroup\(([^,]+),([^)]+)\)",
                 lambda m: f"floor(extract(epoch from {m.group(1)})/{seconds(m.group(2))})*{seconds(m.group(2))}", sql)
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} BETWEEN '{f}' AND '{t}'", sql)
    sql = re.sub(r"\$__timeEpoch\(([^)]+)\)", lambda m: f'extract(epoch from {m.group(1)}) AS "time"', sql)
    sql = re.sub(r"\$__time\(([^)]+)\)", lambda m: f'{m.group(1)} AS "time"', sql)
    sql = sql.replace("$__timeFrom()", f"'{f}'").replace("$__timeTo()", f"'{t}'")
    if "$__" in sql:
        raise ValueError("unexpanded macro in: " + sql)
    return sql


def panel_queries(t_from, t_to):
    for uid in DASHBOARDS:
        with open(os.path.join(HERE, uid + ".json")) as fh:
            board = json.load(fh)
        for panel in board["panels"]:
            for target in panel["targets"]:
                if "rawSql" in target:
                    yield {"dashboard": uid, "panel": panel["title"], "ref": target["refId"],
                           "format": target["format"], "sql": expand(target["rawSql"], t_from, t_to)}


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def series_of(psql, sql):
    """Runs a time-series query through psql; {series name: [(time, value)]}, long or wide form."""
    rows = subprocess.run(psql + ["-X", "-A", "-F", "\t", "-c", sql], check=True,
                          capture_output=True, text=True).stdout.splitlines()
    header, data = rows[0].split("\t"), [r.split("\t") for r in rows[1:-1]]
    series = {}
    for r in data:
        t = datetime.fromtimestamp(float(r[0]), timezone.utc) if re.fullmatch(r"[0-9.]+", r[0]) \
            else parse_time(r[0])
        if "metric" in header:  # long form: time, value, metric
            series.setdefault(r[header.index("metric")], []).append(
                (t, float(r[header.index("value")] or "nan")))
        else:
            for i, name in enumerate(header[1:], 1):
                series.setdefault(name, []).append((t, float(r[i] or "nan")))
    return series


def render(outdir, psql):
    """One PNG per dashboard: its PostgreSQL time-series panels (last 6 hours), run through psql."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    now = datetime.now(timezone.utc)
    start = datetime.fromtimestamp(now.timestamp() - 6 * 3600, timezone.utc)
    panels = {}
    for q in panel_queries(start, now):
        if q["format"] == "time_series":
            panels.setdefault(q["dashboard"], {}).setdefault(q["panel"], []).append(q)
    for uid, by_title in panels.items():
        fig, axes = plt.subplots(len(by_title), 1, figsize=(10, 3 * len(by_title)), squeeze=False)
        for ax, (title, qs) in zip(axes[:, 0], by_title.items()):
            for q in qs:
                for name, points in series_of(psql, q["sql"]).items():
                    style = "--" if q["ref"] != "A" else "-"
                    ax.plot([p[0] for p in points], [p[1] for p in points], style, label=name,
                            marker="." if style == "-" else None)
            ax.set_title(title, fontsize=9)
            ax.legend(fontsize=7)
        fig.suptitle(DASHBOARDS[uid][0])
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, uid + ".png"), dpi=80)
        plt.close(fig)


if __name__ == "__main__":
    if sys.argv[1:2] == ["build"]:
        build(*sys.argv[2:3])
    elif sys.argv[1:2] == ["sql"]:
        for q in panel_queries(parse_time(sys.argv[2]), parse_time(sys.argv[3])):
            print(json.dumps(q))
    elif sys.argv[1:2] == ["promql"]:
        for uid in DASHBOARDS:
            with open(os.path.join(HERE, uid + ".json")) as fh:
                for panel in json.load(fh)["panels"]:
                    for target in panel["targets"]:
                        if "expr" in target:
                            print(target["expr"])
    elif sys.argv[1:2] == ["render"]:
        render(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
