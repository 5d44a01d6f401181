//! SLO compliance, rollback triggers and error-budget burn rates, all read from the 5-minute
//! rollups (never from raw rows). The rules live in slo_definitions and rollback_triggers;
//! runbook-core judges them.

use crate::error;
use crate::own_sql::{self, col};
use pgrx::prelude::*;
use runbook_core::slo::{self as rules, Comparison, Point};

const METRICS: [&str; 7] = [
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "avg_ms",
    "err_rate",
    "cache_hit_rate_percent",
];

/// One rule of either table.
struct Rule {
    name: String,
    metric: String,
    cmp: Comparison,
    threshold: f64,
    level: String,
    required: i64,
    endpoint: Option<String>,
}

/// A rollup row: endpoint, slot (bucket / 5 min), and the METRICS in order.
struct Row {
    endpoint: Option<String>,
    slot: i64,
    values: [Option<f64>; 7],
}

fn window_arg(window: Option<Interval>) -> Interval {
    let w = error::required("window", window);
    if own_sql::interval_ms(&w) < 300_000.0 {
        error::invalid_argument("window", "must be at least one 5-minute bucket");
    }
    w
}

fn load_rules(table: &str, level_col: &str, filter: &str) -> Vec<Rule> {
    let sql = format!(
        "SELECT name, metric, comparison, threshold, {level_col}, consecutive_buckets, endpoint \
         FROM {} {filter} ORDER BY name",
        own_sql::ext_object(table)
    );
    own_sql::select(&sql, &[], |r| Rule {
        name: col::<String>(r, 1).unwrap_or_default(),
        metric: col::<String>(r, 2).unwrap_or_default(),
        cmp: Comparison::parse(&col::<String>(r, 3).unwrap_or_default())
            .unwrap_or(Comparison::Above),
        threshold: col::<f64>(r, 4).unwrap_or(0.0),
        level: col::<String>(r, 5).unwrap_or_default(),
        required: col::<i32>(r, 6).unwrap_or(1) as i64,
        endpoint: col::<String>(r, 7),
    })
}

/// The rollup rows of the complete buckets in [end - window, end), end being the start of the
/// bucket as_of falls in, for the given endpoints (None = the all-endpoints row).
fn load_rows(
    window: &Interval,
    as_of: TimestampWithTimeZone,
    endpoints: &[Option<String>],
) -> Vec<Row> {
    let named: Vec<String> = endpoints.iter().flatten().cloned().collect();
    let want_all = endpoints.iter().any(|e| e.is_none());
    let sql = format!(
        "WITH w AS (SELECT pg_catalog.date_bin('5 minutes', $2, '2000-01-01 00:00:00+00') AS end_at) \
         SELECT endpoint, (EXTRACT(epoch FROM bucket) / 300)::int8, {} \
         FROM {} p, w \
         WHERE bucket >= w.end_at - $1 AND bucket < w.end_at \
           AND ((endpoint IS NULL AND $3) OR endpoint = ANY ($4))",
        METRICS.join(", "),
        own_sql::ext_object("performance_analytics_5min")
    );
    own_sql::select(
        &sql,
        &[
            (*window).into(),
            as_of.into(),
            want_all.into(),
            named.into(),
        ],
        |r| {
            let mut values = [None; 7];
            for (i, v) in values.iter_mut().enumerate() {
                *v = col::<f64>(r, 3 + i);
            }
            Row {
                endpoint: col::<String>(r, 1),
                slot: col::<i64>(r, 2).unwrap_or(0),
                values,
            }
        },
    )
}

fn series(rows: &[Row], endpoint: &Option<String>, metric: &str) -> Vec<Point> {
    let Some(i) = METRICS.iter().position(|m| *m == metric) else {
        return Vec::new();
    };
    rows.iter()
        .filter(|r| &r.endpoint == endpoint)
        .map(|r| Point {
            slot: r.slot,
            value: r.values[i],
        })
        .collect()
}

fn show(metric: &str, v: f64) -> String {
    match metric {
        "err_rate" => format!("{:.2}%", v * 100.0),
        "cache_hit_rate_percent" => format!("{v:.1}%"),
        _ => format!("{v:.0} ms"),
    }
}

/// Observations rounded the way they are shown: 0.01 ms or percent point, 1e-6 of a rate.
fn rounded(metric: &str, v: Option<f64>) -> Option<f64> {
    let scale = if metric == "err_rate" { 1e6 } else { 100.0 };
    v.map(|v| (v * scale).round() / scale)
}

fn scope(endpoint: &Option<String>) -> String {
    endpoint
        .as_ref()
        .map_or("all endpoints".to_string(), |e| format!("endpoint {e}"))
}

fn describe(rule: &Rule, endpoint: &Option<String>, j: &rules::Judgement) -> String {
    let op = if rule.cmp == Comparison::Above {
        ">"
    } else {
        "<"
    };
    match j.observed {
        None => format!(
            "{} {op} {}: no data for {}",
            rule.metric,
            show(&rule.metric, rule.threshold),
            scope(endpoint)
        ),
        Some(worst) => format!(
            "{} {op} {} in {} consecutive bucket(s), {} required; worst {} over {} bucket(s) of {}",
            rule.metric,
            show(&rule.metric, rule.threshold),
            j.breached_buckets,
            rule.required,
            show(&rule.metric, worst),
            j.buckets,
            scope(endpoint)
        ),
    }
}

/// Judges every rule over the window: SLO rules for an endpoint (None = all endpoints).
#[pg_extern(stable, parallel_safe, requires = ["slo"])]
#[allow(clippy::type_complexity)]
fn check_slo_compliance(
    window: default!(Option<Interval>, "'15 minutes'"),
    endpoint: default!(Option<String>, "NULL"),
    as_of: default!(Option<TimestampWithTimeZone>, "now()"),
) -> TableIterator<
    'static,
    (
        name!(slo, String),
        name!(level, String),
        name!(observed, Option<f64>),
        name!(threshold, f64),
        name!(breached_buckets, i64),
        name!(required_buckets, i64),
        name!(detail, String),
    ),
> {
    let window = window_arg(window);
    let as_of = finite_as_of(as_of);
    let rules = load_rules("slo_definitions", "level", "");
    let targets: Vec<Option<String>> = rules
        .iter()
        .map(|r| r.endpoint.clone().or_else(|| endpoint.clone()))
        .collect();
    let rows = load_rows(&window, as_of, &targets);
    let out: Vec<_> = rules
        .iter()
        .zip(targets.iter())
        .map(|(rule, target)| {
            let j = rules::judge(
                &series(&rows, target, &rule.metric),
                rule.cmp,
                rule.threshold,
                rule.required,
            );
            let level = if j.breached {
                rule.level.clone()
            } else {
                "OK".to_string()
            };
            let detail = describe(rule, target, &j);
            (
                rule.name.clone(),
                level,
                rounded(&rule.metric, j.observed),
                rule.threshold,
                j.breached_buckets,
                rule.required,
                detail,
            )
        })
        .collect();
    TableIterator::new(out)
}

struct Fired {
    name: String,
    fired: bool,
    observed: Option<f64>,
    threshold: f64,
    detail: String,
}

/// The `as_of` argument: required, and a finite time (an infinite one has no buckets to judge,
/// and a check that judges nothing must not pass).
fn finite_as_of(as_of: Option<TimestampWithTimeZone>) -> TimestampWithTimeZone {
    let as_of = error::required("as_of", as_of);
    if !as_of.is_finite() {
        error::invalid_argument("as_of", format!("must be a finite time, got {as_of}"));
    }
    as_of
}

/// Failed refreshes in the window, when mv_refresh_log exists in the extension's schema.
fn refresh_failures(window: &Interval, as_of: TimestampWithTimeZone) -> Option<i64> {
    let schema = own_sql::ext_schema();
    let exists = own_sql::select_one(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[format!("{schema}.mv_refresh_log").into()],
        |r| col::<bool>(r, 1).unwrap_or(false),
    );
    if !exists {
        return None;
    }
    let sql = format!(
        "SELECT count(*) FROM {schema}.mv_refresh_log \
         WHERE status = 'failed' AND started_at >= $2 - $1 AND started_at < $2"
    );
    Some(own_sql::select_one(
        &sql,
        &[(*window).into(), as_of.into()],
        |r| col::<i64>(r, 1).unwrap_or(0),
    ))
}

fn judge_triggers(window: Interval, as_of: TimestampWithTimeZone) -> Vec<Fired> {
    let rules = load_rules("rollback_triggers", "''", "WHERE enabled");
    let targets: Vec<Option<String>> = rules.iter().map(|r| r.endpoint.clone()).collect();
    let rows = load_rows(&window, as_of, &targets);
    rules
        .iter()
        .zip(targets.iter())
        .map(|(rule, target)| {
            if rule.metric == "mv_refresh_failures" {
                return match refresh_failures(&window, as_of) {
                    None => Fired {
                        name: rule.name.clone(),
                        fired: false,
                        observed: None,
                        threshold: rule.threshold,
                        detail: "mv_refresh_log does not exist; no refreshes logged".into(),
                    },
                    Some(n) => Fired {
                        name: rule.name.clone(),
                        fired: rule.cmp.breaches(n as f64, rule.threshold),
                        observed: Some(n as f64),
                        threshold: rule.threshold,
                        detail: format!(
                            "{n} failed materialized view refresh(es) in the window, threshold {}",
                            rule.threshold
                        ),
                    },
                };
            }
            let j = rules::judge(
                &series(&rows, target, &rule.metric),
                rule.cmp,
                rule.threshold,
                rule.required,
            );
            Fired {
                name: rule.name.clone(),
                fired: j.breached,
                observed: rounded(&rule.metric, j.observed),
                threshold: rule.threshold,
                detail: describe(rule, target, &j),
            }
        })
        .collect()
}

/// should_rollback() and assert_no_rollback() take the same arguments and return the same rows,
/// which pgrx needs spelled out in each signature: this macro writes the signature once.
macro_rules! rollback_function {
    ($(#[$attr:meta])* fn $name:ident(|$all:ident| $body:expr)) => {
        $(#[$attr])*
        #[pg_extern(stable, parallel_safe, requires = ["slo"])]
        fn $name(
            window: default!(Option<Interval>, "'15 minutes'"),
            as_of: default!(Option<TimestampWithTimeZone>, "now()"),
        ) -> TableIterator<
            'static,
            (
                name!(trigger, String),
                name!(fired, bool),
                name!(observed, Option<f64>),
                name!(threshold, f64),
                name!(detail, String),
            ),
        > {
            let $all = judge_triggers(window_arg(window), finite_as_of(as_of));
            $body
        }
    };
}

/// The rows of should_rollback().
fn rollback_rows(
    all: Vec<Fired>,
) -> TableIterator<'static, (String, bool, Option<f64>, f64, String)> {
    TableIterator::new(
        all.into_iter()
            .map(|f| (f.name, f.fired, f.observed, f.threshold, f.detail)),
    )
}

rollback_function! {
    /// One row per enabled rollback trigger: fired or not over the window's complete buckets.
    fn should_rollback(|all| rollback_rows(all))
}

rollback_function! {
    /// should_rollback() that raises P0004 naming every fired trigger.
    fn assert_no_rollback(|all| {
        let fired: Vec<&Fired> = all.iter().filter(|f| f.fired).collect();
        if !fired.is_empty() {
            let names: Vec<String> = fired.iter().map(|f| f.name.clone()).collect();
            let details: Vec<String> = fired
                .iter()
                .map(|f| format!("{}: {}", f.name, f.detail))
                .collect();
            error::assertion_failed("rollback check", &names, &details);
        }
        rollback_rows(all)
    })
}

/// The error budget of an availability objective, with multi-window burn rates.
#[pg_extern(stable, parallel_safe, requires = ["slo"])]
#[allow(clippy::type_complexity)]
fn slo_error_budget(
    objective: default!(Option<f64>, "0.999"),
    window: default!(Option<Interval>, "'30 days'"),
    as_of: default!(Option<TimestampWithTimeZone>, "now()"),
) -> TableIterator<
    'static,
    (
        name!(objective, f64),
        name!(requests, i64),
        name!(errors, i64),
        name!(budget_consumed, Option<f64>),
        name!(burn_rate_5m, Option<f64>),
        name!(burn_rate_30m, Option<f64>),
        name!(burn_rate_1h, Option<f64>),
        name!(burn_rate_6h, Option<f64>),
        name!(fast_burn, bool),
        name!(slow_burn, bool),
    ),
> {
    let objective = error::required("objective", objective);
    if !(objective > 0.0 && objective < 1.0) {
        error::invalid_argument(
            "objective",
            format!("{objective} is not between 0 and 1 (exclusive)"),
        );
    }
    let window = window_arg(window);
    let as_of = finite_as_of(as_of);
    let sql = format!(
        "WITH w AS (SELECT pg_catalog.date_bin('5 minutes', $2, '2000-01-01 00:00:00+00') AS e) \
         SELECT {sums} \
         FROM {t} p, w WHERE p.endpoint IS NULL AND p.bucket < w.e \
           AND p.bucket >= w.e - GREATEST($1, interval '6 hours')",
        sums = ["$1", "'5 minutes'", "'30 minutes'", "'1 hour'", "'6 hours'"]
            .iter()
            .map(|span| {
                let cond = format!("p.bucket >= w.e - ({span})::interval");
                format!("COALESCE(sum(requests) FILTER (WHERE {cond}), 0)::int8, COALESCE(sum(errors) FILTER (WHERE {cond}), 0)::int8")
            })
            .collect::<Vec<_>>()
            .join(", "),
        t = own_sql::ext_object("performance_analytics_5min"),
    );
    let counts: Vec<(u64, u64)> = own_sql::select_one(&sql, &[window.into(), as_of.into()], |r| {
        (0..5)
            .map(|i| {
                (
                    col::<i64>(r, 2 * i + 1).unwrap_or(0) as u64,
                    col::<i64>(r, 2 * i + 2).unwrap_or(0) as u64,
                )
            })
            .collect()
    });
    let burn = |i: usize| rules::burn_rate(counts[i].1, counts[i].0, objective);
    let row = (
        objective,
        counts[0].0 as i64,
        counts[0].1 as i64,
        burn(0),
        burn(1),
        burn(2),
        burn(3),
        burn(4),
        rules::fast_burn(burn(3), burn(1)),
        rules::slow_burn(burn(4), burn(2)),
    );
    TableIterator::once(row)
}

pgrx::extension_sql_file!("../../sql/slo.sql", name = "slo", requires = ["metrics"]);

pgrx::extension_sql!(
    r#"
COMMENT ON FUNCTION @extschema@.check_slo_compliance(interval, text, timestamptz) IS
  'One row per slo_definitions rule: level OK or the rule''s level when breached, the worst observed value, the threshold, the longest run of breaching buckets and the run required, judged over the complete 5-minute buckets of the window ending at as_of.';
COMMENT ON FUNCTION @extschema@.should_rollback(interval, timestamptz) IS
  'One row per enabled rollback_triggers row: whether it fired over the complete 5-minute buckets of the window ending at as_of, what was observed, and why.';
COMMENT ON FUNCTION @extschema@.assert_no_rollback(interval, timestamptz) IS
  'Like should_rollback(), but raises P0004 naming every fired trigger, so a deploy script stops there.';
COMMENT ON FUNCTION @extschema@.slo_error_budget(double precision, interval, timestamptz) IS
  'Error budget of an availability objective over a window (from the rollups): requests, errors, budget consumed (1.0 = all of it), burn rates over 5 min, 30 min, 1 h and 6 h, and the multi-window fast-burn (14.4x over 1 h and 5 min) and slow-burn (6x over 6 h and 30 min) flags.';
"#,
    name = "slo_comments",
    requires = [
        check_slo_compliance,
        should_rollback,
        assert_no_rollback,
        slo_error_budget
    ]
);
