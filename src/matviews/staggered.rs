//! `refresh_materialized_views_staggered()` and `refresh_materialized_views()`: the matching views
//! refreshed one after another by one background worker, and the validation of the arguments
//! every refresh function shares (the parallel refresh's too).

// pgrx needs each #[pg_extern] signature to spell out its row type (it does not resolve aliases).
#![allow(clippy::type_complexity)]

use crate::error;
use crate::matviews::refresh::{self, RefreshOptions};
use crate::matviews::views::{Filter, Plan};
use crate::own_sql::{self, interval_ms};
use pgrx::prelude::*;

/// The refresh options from the functions' arguments, validated (22023 naming the argument).
pub fn refresh_options(
    stagger_ms: i64,
    concurrently: Option<bool>,
    lock_timeout: Option<Interval>,
    statement_timeout: Option<Interval>,
    only_if_changed: Option<bool>,
) -> RefreshOptions {
    RefreshOptions {
        stagger_ms,
        concurrently: error::required("concurrently", concurrently),
        lock_timeout_ms: interval_argument_ms("lock_timeout", lock_timeout, i32::MAX as f64),
        statement_timeout_ms: interval_argument_ms(
            "statement_timeout",
            statement_timeout,
            i32::MAX as f64,
        ),
        only_if_changed: error::required("only_if_changed", only_if_changed),
    }
}

/// An interval argument in milliseconds: not NULL, not negative, at most `max_ms` (22023 naming
/// the argument otherwise).
pub fn interval_argument_ms(arg: &str, value: Option<Interval>, max_ms: f64) -> i64 {
    let ms = interval_ms(&error::required(arg, value));
    if ms < 0.0 {
        error::invalid_argument(arg, "a negative interval is not allowed");
    }
    if ms > max_ms {
        error::invalid_argument(
            arg,
            format!("at most {} is allowed", own_sql::human_ms(max_ms)),
        );
    }
    ms.round() as i64
}

/// Refreshes `plan` on one worker, in its order, and returns a row per view reached: matview,
/// mode, status, duration_ms, error.
fn refresh_one_after_another(
    plan: Plan,
    options: RefreshOptions,
) -> Vec<(String, String, String, f64, Option<String>)> {
    let run = refresh::run(&plan, options, 1);
    run.results
        .into_iter()
        .map(|(i, r)| {
            (
                plan.views[i].display(),
                r.mode(),
                r.status(),
                r.duration_ms,
                r.error,
            )
        })
        .collect()
}

/// Refreshes the matching materialized views in dependency order, each in its own transaction
/// (in a background worker started for the call), concurrently where the view allows it, with
/// `stagger` between views; a NOTICE per view and a row per view, also logged to mv_refresh_log.
#[pg_extern(volatile)]
#[allow(clippy::too_many_arguments)]
fn refresh_materialized_views_staggered(
    schema_pattern: default!(Option<&str>, "'%'"),
    name_pattern: default!(Option<&str>, "'%'"),
    stagger: default!(Option<Interval>, "'0'"),
    concurrently: default!(Option<bool>, "true"),
    lock_timeout: default!(Option<Interval>, "'5s'"),
    statement_timeout: default!(Option<Interval>, "'0'"),
    only_if_changed: default!(Option<bool>, "false"),
) -> TableIterator<
    'static,
    (
        name!(matview, String),
        name!(mode, String),
        name!(status, String),
        name!(duration_ms, f64),
        name!(error, Option<String>),
    ),
> {
    const DAY_MS: f64 = 86_400_000.0;
    let options = refresh_options(
        interval_argument_ms("stagger", stagger, DAY_MS),
        concurrently,
        lock_timeout,
        statement_timeout,
        only_if_changed,
    );
    let plan = Plan::of_matching(&Filter::validated(schema_pattern, name_pattern));
    TableIterator::new(refresh_one_after_another(plan, options))
}

/// Refreshes every materialized view, plainly and in dependency order, with the same log.
#[pg_extern(volatile)]
fn refresh_materialized_views() -> TableIterator<
    'static,
    (
        name!(matview, String),
        name!(mode, String),
        name!(status, String),
        name!(duration_ms, f64),
        name!(error, Option<String>),
    ),
> {
    let options = RefreshOptions {
        stagger_ms: 0,
        concurrently: false,
        lock_timeout_ms: 5_000,
        statement_timeout_ms: 0,
        only_if_changed: false,
    };
    let plan = Plan::of_matching(&Filter::everything());
    TableIterator::new(refresh_one_after_another(plan, options))
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test(error = "invalid value for argument \"stagger\": a negative interval is not allowed")]
    fn a_negative_stagger_is_refused() {
        Spi::run("SELECT * FROM refresh_materialized_views_staggered(stagger => '-1s')").unwrap();
    }

    #[pg_test(error = "invalid value for argument \"schema_pattern\": no schema matches \"nope\"")]
    fn an_unknown_schema_is_refused() {
        Spi::run("SELECT * FROM refresh_materialized_views_staggered(schema_pattern => 'nope')")
            .unwrap();
    }
}
