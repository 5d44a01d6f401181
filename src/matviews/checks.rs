//! The read-only side of the folder: `verify_materialized_view_indexes()` (can each view be
//! refreshed CONCURRENTLY, and why not), `refresh_status()` (the runs in flight), and
//! `prune_mv_refresh_log()` (the log's retention, which every run applies first).

// pgrx needs each #[pg_extern] signature to spell out its row type (it does not resolve aliases).
#![allow(clippy::type_complexity)]

use crate::matviews::refresh::{RUN_APPLICATION_NAME, WORKER_TYPE};
use crate::matviews::views::{Filter, views_matching};
use crate::own_sql::{self, col};
use crate::settings;
use pgrx::prelude::*;

/// One row per materialized view: whether REFRESH ... CONCURRENTLY can be used, and why not.
#[pg_extern(stable, parallel_safe)]
fn verify_materialized_view_indexes(
    schema_pattern: default!(Option<&str>, "'%'"),
    name_pattern: default!(Option<&str>, "'%'"),
) -> TableIterator<
    'static,
    (
        name!(schemaname, String),
        name!(matviewname, String),
        name!(is_populated, bool),
        name!(unique_index, Option<String>),
        name!(can_refresh_concurrently, bool),
        name!(status, String),
        name!(detail, String),
    ),
> {
    let f = Filter::validated(schema_pattern, name_pattern);
    let views = own_sql::with_lock_timeout(|| views_matching(&f));
    TableIterator::new(views.into_iter().map(|v| {
        let detail = match (&v.unique_index, v.populated) {
            (Some(ix), true) => format!("REFRESH ... CONCURRENTLY can use unique index {ix}"),
            (Some(ix), false) => {
                format!("not populated: the first refresh is plain, later ones can use {ix}")
            }
            (None, _) => {
                let mut d =
                    "no unique index usable by REFRESH ... CONCURRENTLY (it needs a valid, \
                             non-partial unique btree index on plain columns): refreshes are plain \
                             and lock out readers"
                        .to_string();
                if !v.unusable.is_empty() {
                    d.push_str(&format!("; {}", v.unusable.join(", ")));
                }
                d
            }
        };
        let status = if v.unique_index.is_some() {
            "PASS"
        } else {
            "FAIL"
        };
        let concurrent = v.unique_index.is_some() && v.populated;
        (
            v.schema,
            v.name,
            v.populated,
            v.unique_index,
            concurrent,
            status.to_string(),
            detail,
        )
    }))
}

/// Deletes mv_refresh_log rows older than `pg_runbook.refresh_log_retention` (0 keeps them all)
/// and returns how many. Every refresh run calls it first; the background worker calls it too.
#[pg_extern(volatile)]
pub fn prune_mv_refresh_log() -> i64 {
    let retention_s = settings::REFRESH_LOG_RETENTION_S.get();
    if retention_s == 0 {
        return 0;
    }
    let sql = format!(
        "DELETE FROM {} WHERE started_at OPERATOR(pg_catalog.<) \
           (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))",
        own_sql::ext_object("mv_refresh_log")
    );
    own_sql::with_lock_timeout(|| own_sql::execute(&sql, &[(retention_s as f64).into()])) as i64
}

/// The refresh runs in flight, one row per worker: how many views of its run are done, and the
/// view the worker is refreshing now with how long it has taken so far.
#[pg_extern(volatile)]
fn refresh_status() -> TableIterator<
    'static,
    (
        name!(run_id, i64),
        name!(worker_pid, i32),
        name!(caller_pid, i32),
        name!(started_at, Option<TimestampWithTimeZone>),
        name!(views, i32),
        name!(done, i32),
        name!(current_matview, Option<String>),
        name!(current_ms, Option<f64>),
    ),
> {
    // Each worker names its run in application_name (worker.rs); a run's rows are the workers
    // still connected.
    let sql = format!(
        "SELECT r.run_id, a.pid, r.caller_pid, r.started_at, r.views, \
           (SELECT pg_catalog.count(*) FROM {log} l \
             WHERE l.run_id OPERATOR(pg_catalog.=) r.run_id)::pg_catalog.int4, \
           CASE WHEN a.query OPERATOR(pg_catalog.~~) 'REFRESH MATERIALIZED VIEW %' \
                THEN pg_catalog.regexp_replace(a.query, '^REFRESH MATERIALIZED VIEW (CONCURRENTLY )?', '') END, \
           CASE WHEN a.query OPERATOR(pg_catalog.~~) 'REFRESH MATERIALIZED VIEW %' \
                THEN pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) a.query_start) \
                     OPERATOR(pg_catalog.*) 1000::pg_catalog.float8 END \
         FROM {runs} r JOIN pg_catalog.pg_stat_activity a \
           ON a.application_name OPERATOR(pg_catalog.=) ('{prefix}' OPERATOR(pg_catalog.||) r.run_id::pg_catalog.text) \
          AND a.backend_type OPERATOR(pg_catalog.=) '{kind}' \
         WHERE r.finished_at IS NULL ORDER BY r.run_id, a.pid",
        log = own_sql::ext_object("mv_refresh_log"),
        runs = own_sql::ext_object("mv_refresh_runs"),
        kind = WORKER_TYPE,
        prefix = RUN_APPLICATION_NAME,
    );
    let rows = own_sql::with_lock_timeout(|| {
        own_sql::select(&sql, &[], |r| {
            (
                col::<i64>(r, 1).unwrap_or(0),
                col::<i32>(r, 2).unwrap_or(0),
                col::<i32>(r, 3).unwrap_or(0),
                col::<TimestampWithTimeZone>(r, 4),
                col::<i32>(r, 5).unwrap_or(0),
                col::<i32>(r, 6).unwrap_or(0),
                col::<String>(r, 7),
                col::<f64>(r, 8),
            )
        })
    });
    TableIterator::new(rows)
}
