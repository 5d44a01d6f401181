//! Materialized views: `verify_materialized_view_indexes()`, the refresh functions and their log.
//!
//! This module finds the views and their dependencies and validates arguments; the refreshes
//! themselves run in a background worker (matview_refresh.rs), one transaction per view, so each
//! commits on its own. The order and the skip rule are runbook-core's `matviews`.

// pgrx needs each #[pg_extern] signature to spell out its row type (it does not resolve aliases).
#![allow(clippy::type_complexity)]

pub mod log;
pub mod parallel;
pub mod refresh;
pub mod worker;

use crate::error;
use crate::own_sql::{self, col, interval_ms, quote_ident};
use crate::settings;
use pgrx::prelude::*;
use refresh::{Options, Plan};

/// A materialized view as the catalog describes it now.
#[derive(Debug, Clone)]
pub struct ViewInfo {
    pub oid: pg_sys::Oid,
    pub schema: String,
    pub name: String,
    pub populated: bool,
    /// A unique index REFRESH ... CONCURRENTLY can use.
    pub unique_index: Option<String>,
    /// Unique indexes it cannot use, each with the reason.
    pub unusable: Vec<String>,
    /// Whether the current role may refresh it (owns it, or is a member of its owner role).
    pub may_refresh: bool,
    pub owner: String,
}

impl ViewInfo {
    /// schema.name as a DBA reads it (quoted only where needed).
    pub fn display(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// What PostgreSQL's REFRESH ... CONCURRENTLY accepts (is_usable_unique_index in matview.c): a
/// unique, immediate, valid btree index without a predicate whose keys are plain columns.
const USABLE: &str = "i.indisunique AND i.indimmediate AND i.indisvalid AND i.indpred IS NULL \
                      AND i.indexprs IS NULL AND am.amname OPERATOR(pg_catalog.=) 'btree'";

/// Every function and operator pg_catalog-qualified: the refresh functions run these as the
/// caller, under the caller's search_path, where a role may have planted `public.=(oid, oid)`.
fn view_query(condition: &str) -> String {
    format!(
        "SELECT c.oid, n.nspname::pg_catalog.text, c.relname::pg_catalog.text, c.relispopulated, \
           (SELECT ic.relname::pg_catalog.text FROM pg_catalog.pg_index i \
              JOIN pg_catalog.pg_class ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid \
              JOIN pg_catalog.pg_am am ON am.oid OPERATOR(pg_catalog.=) ic.relam \
            WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND {USABLE} ORDER BY ic.relname LIMIT 1), \
           ARRAY(SELECT ic.relname::pg_catalog.text OPERATOR(pg_catalog.||) \
                          CASE WHEN NOT i.indisvalid THEN ' is not valid' \
                               WHEN i.indpred IS NOT NULL THEN ' is partial' \
                               WHEN i.indexprs IS NOT NULL THEN ' indexes an expression' \
                               WHEN am.amname OPERATOR(pg_catalog.<>) 'btree' THEN ' is not a btree index' \
                               ELSE ' is deferrable' END \
                 FROM pg_catalog.pg_index i \
                 JOIN pg_catalog.pg_class ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid \
                 JOIN pg_catalog.pg_am am ON am.oid OPERATOR(pg_catalog.=) ic.relam \
                 WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND i.indisunique AND NOT ({USABLE}) ORDER BY 1), \
           pg_catalog.pg_has_role(c.relowner, 'USAGE'), \
           pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE c.relkind OPERATOR(pg_catalog.=) 'm' AND {condition} ORDER BY 2, 3"
    )
}

fn map_view(r: &pgrx::spi::SpiHeapTupleData) -> ViewInfo {
    ViewInfo {
        oid: col::<pg_sys::Oid>(r, 1).unwrap_or(pg_sys::InvalidOid),
        schema: col::<String>(r, 2).unwrap_or_default(),
        name: col::<String>(r, 3).unwrap_or_default(),
        populated: col::<bool>(r, 4).unwrap_or(false),
        unique_index: col::<String>(r, 5),
        unusable: col::<Vec<String>>(r, 6).unwrap_or_default(),
        may_refresh: col::<bool>(r, 7).unwrap_or(false),
        owner: col::<String>(r, 8).unwrap_or_default(),
    }
}

/// The argument filters: LIKE patterns on the schema and the view's name.
pub struct Filter {
    schema_pattern: String,
    name_pattern: String,
}

/// Validates the filters; a schema pattern that matches no schema is a mistake (22023), not an
/// empty result, so a typo in a deploy script does not pass silently.
pub fn filter(schema_pattern: Option<&str>, name_pattern: Option<&str>) -> Filter {
    let schema_pattern = error::required("schema_pattern", schema_pattern).to_string();
    let name_pattern = error::required("name_pattern", name_pattern).to_string();
    let exists = own_sql::select_one(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace \
         WHERE nspname::pg_catalog.text OPERATOR(pg_catalog.~~) $1)",
        &[schema_pattern.as_str().into()],
        |r| col::<bool>(r, 1).unwrap_or(false),
    );
    if !exists {
        error::invalid_argument(
            "schema_pattern",
            format!("no schema matches \"{schema_pattern}\""),
        );
    }
    Filter {
        schema_pattern,
        name_pattern,
    }
}

/// The materialized views matching `f`, by schema and name.
pub fn views_matching(f: &Filter) -> Vec<ViewInfo> {
    let sql = view_query(
        "n.nspname::pg_catalog.text OPERATOR(pg_catalog.~~) $1 \
         AND c.relname::pg_catalog.text OPERATOR(pg_catalog.~~) $2 \
         AND n.nspname OPERATOR(pg_catalog.<>) ALL ('{pg_catalog,information_schema}'::pg_catalog.name[])",
    );
    own_sql::select(
        &sql,
        &[
            f.schema_pattern.as_str().into(),
            f.name_pattern.as_str().into(),
        ],
        map_view,
    )
}

/// The materialized views with these oids, as they are now (the worker re-reads them).
pub fn views_by_oid(oids: &[pg_sys::Oid]) -> Vec<ViewInfo> {
    let ids: Vec<i64> = oids.iter().map(|o| o.to_u32() as i64).collect();
    own_sql::select(
        &view_query("c.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])"),
        &[ids.into()],
        map_view,
    )
}

/// The relations each starting relation's query reads, through plain views (a materialized
/// view's rule depends on the views it names, which depend on their tables). `$1` is an int8[]
/// of the views to start from; the result is (view, relation read).
pub const REFERENCES: &str = "WITH RECURSIVE refs(mv, rel) AS ( \
      SELECT r.ev_class, d.refobjid FROM pg_catalog.pg_rewrite r \
      JOIN pg_catalog.pg_depend d \
        ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
       AND d.objid OPERATOR(pg_catalog.=) r.oid \
       AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
      WHERE r.ev_class OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[]) \
        AND d.refobjid OPERATOR(pg_catalog.<>) r.ev_class \
      UNION \
      SELECT refs.mv, d.refobjid FROM refs \
      JOIN pg_catalog.pg_class v ON v.oid OPERATOR(pg_catalog.=) refs.rel \
       AND v.relkind OPERATOR(pg_catalog.=) 'v' \
      JOIN pg_catalog.pg_rewrite r ON r.ev_class OPERATOR(pg_catalog.=) v.oid \
      JOIN pg_catalog.pg_depend d \
        ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
       AND d.objid OPERATOR(pg_catalog.=) r.oid \
       AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
      WHERE d.refobjid OPERATOR(pg_catalog.<>) v.oid) ";

/// Dependency edges among `views` as index pairs (view, the view it reads).
pub fn dependency_edges(views: &[ViewInfo]) -> Vec<(usize, usize)> {
    let ids: Vec<i64> = views.iter().map(|v| v.oid.to_u32() as i64).collect();
    let sql = format!(
        "{REFERENCES} SELECT DISTINCT mv::pg_catalog.int8, rel::pg_catalog.int8 FROM refs \
         WHERE rel OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[]) AND rel OPERATOR(pg_catalog.<>) mv"
    );
    let pairs = own_sql::select(&sql, &[ids.clone().into()], |r| {
        (col::<i64>(r, 1).unwrap_or(0), col::<i64>(r, 2).unwrap_or(0))
    });
    let index = |oid: i64| ids.iter().position(|&i| i == oid);
    pairs
        .into_iter()
        .filter_map(|(a, b)| Some((index(a)?, index(b)?)))
        .collect()
}

/// `views` in refresh order (each after the views it reads), with the dependency edges among
/// them as index pairs into that order.
pub fn in_refresh_order(views: Vec<ViewInfo>) -> Plan {
    let edges = dependency_edges(&views);
    let (order, cyclic) = runbook_core::matviews::refresh_order(views.len(), &edges);
    if !cyclic.is_empty() {
        let names: Vec<String> = cyclic.iter().map(|&i| views[i].display()).collect();
        pgrx::warning!(
            "materialized views on a dependency cycle are refreshed last: {}",
            names.join(", ")
        );
    }
    let mut position = vec![0usize; views.len()];
    for (new, &old) in order.iter().enumerate() {
        position[old] = new;
    }
    Plan {
        views: order.iter().map(|&i| views[i].clone()).collect(),
        edges: edges
            .iter()
            .map(|&(view, on)| (position[view], position[on]))
            .collect(),
    }
}

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
    let f = filter(schema_pattern, name_pattern);
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

/// The refresh options every refresh function takes, validated (22023 naming the argument).
pub fn options(
    stagger_ms: i64,
    concurrently: Option<bool>,
    lock_timeout: Option<Interval>,
    statement_timeout: Option<Interval>,
    only_if_changed: Option<bool>,
) -> Options {
    Options {
        stagger_ms,
        concurrently: error::required("concurrently", concurrently),
        lock_timeout_ms: non_negative_ms("lock_timeout", lock_timeout, i32::MAX as f64),
        statement_timeout_ms: non_negative_ms(
            "statement_timeout",
            statement_timeout,
            i32::MAX as f64,
        ),
        only_if_changed: error::required("only_if_changed", only_if_changed),
    }
}

pub fn non_negative_ms(arg: &str, value: Option<Interval>, max_ms: f64) -> i64 {
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

type RefreshRows = TableIterator<
    'static,
    (
        name!(matview, String),
        name!(mode, String),
        name!(status, String),
        name!(duration_ms, f64),
        name!(error, Option<String>),
    ),
>;

fn run(views: Vec<ViewInfo>, options: Options) -> RefreshRows {
    let rows = refresh::run(&in_refresh_order(views), options, 1).rows;
    TableIterator::new(
        rows.into_iter()
            .map(|r| (r.matview, r.mode, r.status, r.duration_ms, r.error)),
    )
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
    let options = options(
        non_negative_ms("stagger", stagger, DAY_MS),
        concurrently,
        lock_timeout,
        statement_timeout,
        only_if_changed,
    );
    let f = filter(schema_pattern, name_pattern);
    let views = own_sql::with_lock_timeout(|| views_matching(&f));
    run(views, options)
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
    let options = Options {
        stagger_ms: 0,
        concurrently: false,
        lock_timeout_ms: 5_000,
        statement_timeout_ms: 0,
        only_if_changed: false,
    };
    let views = own_sql::with_lock_timeout(|| {
        views_matching(&Filter {
            schema_pattern: "%".into(),
            name_pattern: "%".into(),
        })
    });
    run(views, options)
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
    // Each worker names its run in application_name (matview_worker.rs); a run's rows are the
    // workers still connected.
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
        kind = refresh::WORKER_TYPE,
        prefix = refresh::RUN_APPLICATION_NAME,
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

pgrx::extension_sql_file!(
    "../../sql/matviews.sql",
    name = "matviews",
    requires = [
        verify_materialized_view_indexes,
        refresh_materialized_views_staggered,
        refresh_materialized_views,
        refresh_status,
        prune_mv_refresh_log
    ]
);

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn setup() {
        Spi::run(
            "CREATE SCHEMA mvt; \
             CREATE TABLE mvt.t AS SELECT g AS id, g % 3 AS k FROM generate_series(1, 30) g; \
             CREATE MATERIALIZED VIEW mvt.z_base AS SELECT k, count(*) AS n FROM mvt.t GROUP BY k; \
             CREATE UNIQUE INDEX ON mvt.z_base (k); \
             CREATE VIEW mvt.plain_view AS SELECT * FROM mvt.z_base; \
             CREATE MATERIALIZED VIEW mvt.a_top AS SELECT * FROM mvt.plain_view WHERE n > 1;",
        )
        .unwrap();
    }

    #[pg_test]
    fn a_view_without_a_unique_index_fails_verification() {
        setup();
        let rows: Vec<(String, String, Option<String>)> = Spi::connect(|c| {
            c.select(
                "SELECT matviewname, status, unique_index FROM verify_materialized_view_indexes('mvt') ORDER BY 1",
                None,
                &[],
            )
            .unwrap()
            .map(|r| (r.get(1).unwrap().unwrap(), r.get(2).unwrap().unwrap(), r.get(3).unwrap()))
            .collect()
        });
        assert_eq!(
            rows,
            vec![
                ("a_top".into(), "FAIL".into(), None),
                ("z_base".into(), "PASS".into(), Some("z_base_k_idx".into())),
            ]
        );
    }

    #[pg_test]
    fn a_view_on_a_view_through_a_plain_view_comes_second() {
        setup();
        let f = super::filter(Some("mvt"), Some("%"));
        let order: Vec<String> = super::in_refresh_order(super::views_matching(&f))
            .views
            .iter()
            .map(|v| v.name.clone())
            .collect();
        assert_eq!(order, vec!["z_base".to_string(), "a_top".to_string()]);
    }

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
