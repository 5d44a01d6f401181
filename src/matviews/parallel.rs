//! `refresh_analytics_views_concurrent()`: the views the staggered refresh would refresh, with
//! independent views refreshed at the same time on several background workers, and a verdict
//! against a time budget. The run is the staggered refresh's (refresh.rs, worker.rs) with more
//! workers; this module sizes it and judges it (runbook-core's `matviews`).

// pgrx needs each #[pg_extern] signature to spell out its row type (it does not resolve aliases).
#![allow(clippy::type_complexity)]

use crate::error;
use crate::matviews::refresh::{self, MAX_WORKERS};
use crate::matviews::staggered::{interval_argument_ms, refresh_options};
use crate::matviews::views::{Filter, Plan};
use crate::own_sql::{self, col};
use crate::settings;
use pgrx::prelude::*;
use runbook_core::matviews::{budget_verdict, parallelism, slowest_chain};

/// Background worker slots free now: max_worker_processes less the background workers running
/// (every backend that is not one of PostgreSQL's own kinds is a background worker).
fn free_worker_slots() -> usize {
    let free = own_sql::select_one(
        "SELECT pg_catalog.current_setting('max_worker_processes')::pg_catalog.int4 \
                OPERATOR(pg_catalog.-) pg_catalog.count(*)::pg_catalog.int4 \
         FROM pg_catalog.pg_stat_activity \
         WHERE backend_type OPERATOR(pg_catalog.<>) ALL ('{client backend,autovacuum launcher,\
               autovacuum worker,background writer,checkpointer,startup,walreceiver,walsender,\
               walwriter,archiver,standalone backend}'::pg_catalog.text[])",
        &[],
        |r| col::<i32>(r, 1).unwrap_or(0),
    );
    free.max(0) as usize
}

/// Refreshes the matching materialized views in dependency order, independent ones in parallel on
/// up to `max_parallel` background workers; one row per view and a last row with the run's
/// verdict against `budget`. Callable by runbook_operator; each view is refreshed as the caller.
#[pg_extern(volatile)]
#[allow(clippy::too_many_arguments)]
fn refresh_analytics_views_concurrent(
    schema_pattern: default!(Option<&str>, "'%'"),
    name_pattern: default!(Option<&str>, "'%'"),
    max_parallel: default!(Option<i32>, "NULL"),
    budget: default!(Option<Interval>, "'5 minutes'"),
    concurrently: default!(Option<bool>, "true"),
    lock_timeout: default!(Option<Interval>, "'5s'"),
    statement_timeout: default!(Option<Interval>, "'0'"),
    only_if_changed: default!(Option<bool>, "false"),
) -> TableIterator<
    'static,
    (
        name!(matview, Option<String>),
        name!(mode, String),
        name!(status, String),
        name!(duration_ms, f64),
        name!(rows_after, Option<i64>),
        name!(worker, Option<i32>),
        name!(detail, Option<String>),
    ),
> {
    let cap = settings::REFRESH_MAX_PARALLEL
        .get()
        .clamp(1, MAX_WORKERS as i32);
    let requested = max_parallel.unwrap_or(cap);
    if requested < 1 {
        error::invalid_argument("max_parallel", "at least 1 worker is needed");
    }
    const MONTH_MS: f64 = 30.0 * 86_400_000.0;
    let budget_ms = interval_argument_ms("budget", budget, MONTH_MS) as f64;
    let options = refresh_options(
        0,
        concurrently,
        lock_timeout,
        statement_timeout,
        only_if_changed,
    );
    let plan = Plan::of_matching(&Filter::validated(schema_pattern, name_pattern));
    let workers = parallelism(
        requested as usize,
        cap as usize,
        free_worker_slots(),
        plan.views.len(),
    );
    let result = refresh::run(&plan, options, workers);

    let mut durations = vec![0.0; plan.views.len()];
    for (i, r) in &result.results {
        durations[*i] = r.duration_ms;
    }
    let (chain, chain_ms) = slowest_chain(&durations, &plan.edges);
    let names: Vec<String> = chain.iter().map(|&i| plan.views[i].display()).collect();
    let (status, detail) = budget_verdict(
        result.total_ms,
        budget_ms,
        result.workers,
        plan.views.len(),
        &names,
        chain_ms,
        own_sql::human_ms,
    );
    let verdict = (
        None,
        "run".to_string(),
        status.to_string(),
        result.total_ms,
        None,
        None,
        Some(detail),
    );
    let rows: Vec<_> = result
        .results
        .into_iter()
        .map(|(i, r)| {
            (
                Some(plan.views[i].display()),
                r.mode(),
                r.status(),
                r.duration_ms,
                r.rows,
                Some(r.worker as i32),
                r.error,
            )
        })
        .chain(std::iter::once(verdict))
        .collect();
    TableIterator::new(rows)
}

pgrx::extension_sql!(
    r#"
COMMENT ON FUNCTION @extschema@.refresh_analytics_views_concurrent(text, text, integer, interval, boolean, interval, interval, boolean) IS
    'Refreshes matching materialized views in dependency order, independent ones in parallel on up to max_parallel background workers (capped by pg_runbook.refresh_max_parallel and the free slots), each as the caller; a row per view and a verdict row against budget naming the slowest chain. For runbook_operator.';
"#,
    name = "matviews_parallel",
    requires = ["matviews", refresh_analytics_views_concurrent]
);
