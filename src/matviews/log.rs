//! The refresh workers' bookkeeping: their transactions, the log rows, and the source snapshots
//! behind only_if_changed. Written as the extension's owner, one transaction per view, with
//! every function and operator pg_catalog-qualified (the worker pins its search_path too).
//! sql/matviews.sql, loaded here, creates the tables written here.

use crate::matviews::refresh::ViewResult;
use crate::matviews::views::{VIEW_REFERENCES, ViewInfo, oid_array};
use crate::own_sql::{self, col};
use pgrx::prelude::*;
use runbook_core::matviews::{Outcome, SourceState};
use std::collections::BTreeMap;

pub fn begin_transaction() {
    // SAFETY: a worker's own top-level transaction, started when none is open (a worker runs
    // its units one after another); the snapshot is pushed for the statements run in it and
    // popped by commit_transaction (or released by the abort of a failed transaction).
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
}

pub fn commit_transaction() {
    // SAFETY: ends the transaction begin_transaction started, popping the snapshot it pushed.
    unsafe {
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
        // A worker has no idle loop to flush its statistics; flush them so the next view's
        // source counters (and the next run's) include this refresh's writes.
        pg_sys::pgstat_report_stat(true);
    }
}

/// Bookkeeping transactions (the run's row, skipped and unchanged log rows) need not wait for
/// their WAL flush: losing one in a crash is harmless, and each would otherwise cost a disk flush
/// that a bare REFRESH does not pay. Refreshes and failures keep synchronous_commit as configured.
pub fn without_flush_wait() {
    own_sql::set_local("synchronous_commit", "off");
}

/// What a worker needs to write its run's bookkeeping: the extension's tables (qualified once per
/// run), who writes them, and what each log row records of the worker.
pub struct Bookkeeping {
    /// The extension's owner: the worker writes its bookkeeping as this role (as a SECURITY
    /// DEFINER function would), so a caller needs no privileges on these tables.
    pub owner: pg_sys::Oid,
    pub log_table: String,
    pub sources_table: String,
    pub runs_table: String,
    /// The role the refreshes run as (the caller's), recorded in each log row.
    pub role: String,
    /// This worker's number in its run (1-based), recorded in each log row.
    pub worker: i32,
}

impl Bookkeeping {
    /// Runs `f` as the extension's owner, then switches back; an ERROR inside is cleaned up by
    /// the transaction's abort, which restores the user.
    pub fn as_owner<R>(&self, f: impl FnOnce() -> R) -> R {
        own_sql::as_role(self.owner, false, f)
    }
}

/// How many of the latest runs the priorities of a parallel run look back over: enough for
/// views refreshed every run or every few, and a bounded read (the log's run_id index).
const RUNS_LOOKED_BACK: i64 = 20;

/// Each view's refresh time in its latest successful refresh among the last runs, None where it
/// has none; in the order of `views`. Read as the extension's owner.
pub fn last_durations(t: &Bookkeeping, views: &[Option<ViewInfo>]) -> Vec<Option<f64>> {
    let sql = format!(
        "SELECT DISTINCT ON (l.schemaname, l.matview) l.schemaname, l.matview, l.duration_ms \
         FROM {log} l \
         WHERE l.run_id OPERATOR(pg_catalog.>) \
               ((SELECT pg_catalog.max(r.run_id) FROM {runs} r) OPERATOR(pg_catalog.-) $1) \
           AND l.status OPERATOR(pg_catalog.=) 'success' \
         ORDER BY l.schemaname, l.matview, l.run_id DESC",
        log = t.log_table,
        runs = t.runs_table
    );
    let logged: std::collections::HashMap<(String, String), f64> = t.as_owner(|| {
        own_sql::select(&sql, &[RUNS_LOOKED_BACK.into()], |r| {
            (
                (
                    col::<String>(r, 1).unwrap_or_default(),
                    col::<String>(r, 2).unwrap_or_default(),
                ),
                col::<f64>(r, 3).unwrap_or(0.0),
            )
        })
        .into_iter()
        .collect()
    });
    views
        .iter()
        .map(|v| {
            v.as_ref()
                .and_then(|v| logged.get(&(v.schema.clone(), v.name.clone())).copied())
        })
        .collect()
}

/// Writes the log row of a view that was not refreshed (skipped, failed) in its own transaction.
pub fn log_in_own_transaction(t: &Bookkeeping, run_id: i64, v: &ViewInfo, result: &ViewResult) {
    begin_transaction();
    if result.outcome != Outcome::Failed {
        without_flush_wait();
    }
    insert_log_row(t, run_id, v, result);
    commit_transaction();
}

/// Inserts view `v`'s log row in the open transaction.
pub fn insert_log_row(t: &Bookkeeping, run_id: i64, v: &ViewInfo, result: &ViewResult) {
    t.as_owner(|| {
        own_sql::run_prepared(
            &format!(
                "INSERT INTO {} (run_id, schemaname, matview, mode, status, started_at, finished_at, \
                             duration_ms, rows_after, error, worker, refreshed_by) \
             VALUES ($1, $2, $3, $4, $5, \
                     pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) \
                       pg_catalog.make_interval(secs => $6 OPERATOR(pg_catalog./) 1000.0::pg_catalog.float8), \
                     pg_catalog.clock_timestamp(), $6, $7, $8, $9, $10)",
                t.log_table
            ),
            &[INT8, TEXT, TEXT, TEXT, TEXT, FLOAT8, INT8, TEXT, INT4, TEXT],
            &[
                run_id.into(),
                v.schema.as_str().into(),
                v.name.as_str().into(),
                result.mode().into(),
                result.status().into(),
                result.duration_ms.into(),
                result.rows.into(),
                result.error.as_deref().into(),
                t.worker.into(),
                t.role.as_str().into(),
            ],
            |_| (),
        );
    })
}

const INT4: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT4OID);
const INT8: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT8OID);
const INT8_ARRAY: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT8ARRAYOID);
const TEXT: PgOid = PgOid::BuiltIn(PgBuiltInOids::TEXTOID);
const FLOAT8: PgOid = PgOid::BuiltIn(PgBuiltInOids::FLOAT8OID);

/// The view's source relations now, and as recorded at its last successful refresh.
pub type SourceStates = BTreeMap<u32, SourceState>;

/// The source relations of each of `views` (keyed by view oid): the tables and views it reads,
/// through views, and the partitions of partitioned ones. Read once per run, with the views.
pub fn sources_of_views(views: &[pg_sys::Oid]) -> BTreeMap<u32, Vec<i64>> {
    let sql = format!(
        "{VIEW_REFERENCES}, rels AS ( \
           SELECT mv, rel FROM refs \
           UNION SELECT refs.mv, p.relid FROM refs \
             JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) refs.rel \
              AND c.relkind OPERATOR(pg_catalog.=) 'p', \
             LATERAL pg_catalog.pg_partition_tree(c.oid) p) \
         SELECT rels.mv::pg_catalog.int8, c.oid::pg_catalog.int8 \
         FROM rels JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) rels.rel \
          AND c.relkind OPERATOR(pg_catalog.=) ANY ('{{r,m,p,f}}'::pg_catalog.\"char\"[])"
    );
    let ids = oid_array(views);
    let mut sources = BTreeMap::<u32, Vec<i64>>::new();
    for (view, source) in own_sql::select(&sql, &[ids.into()], |r| {
        (col::<i64>(r, 1).unwrap_or(0), col::<i64>(r, 2).unwrap_or(0))
    }) {
        sources.entry(view as u32).or_default().push(source);
    }
    sources
}

/// The state of `v`'s sources now (write counters and file nodes), and as recorded at its last
/// successful refresh. One prepared statement per view.
pub fn source_states(
    t: &Bookkeeping,
    v: &ViewInfo,
    sources: &[i64],
) -> (SourceStates, SourceStates) {
    t.as_owner(|| {
        let sql = format!(
            "SELECT true, c.oid::pg_catalog.int8, pg_catalog.pg_stat_get_tuples_inserted(c.oid) \
                OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_tuples_updated(c.oid) \
                OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_tuples_deleted(c.oid), \
                c.relfilenode::pg_catalog.int8 \
         FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[]) \
         UNION ALL \
         SELECT false, source::pg_catalog.int8, writes, filenode::pg_catalog.int8 FROM {} \
         WHERE matview OPERATOR(pg_catalog.=) $2::pg_catalog.oid",
            t.sources_table
        );
        let rows = own_sql::run_prepared(
            &sql,
            &[INT8_ARRAY, INT8],
            &[sources.to_vec().into(), (v.oid.to_u32() as i64).into()],
            |r| {
                (
                    col::<bool>(r, 1).unwrap_or(false),
                    col::<i64>(r, 2).unwrap_or(0) as u32,
                    SourceState {
                        writes: col::<i64>(r, 3).unwrap_or(0),
                        filenode: col::<i64>(r, 4).unwrap_or(0) as u32,
                    },
                )
            },
        );
        let mut now = SourceStates::new();
        let mut before = SourceStates::new();
        for (is_now, oid, state) in rows {
            if is_now {
                now.insert(oid, state)
            } else {
                before.insert(oid, state)
            };
        }
        (now, before)
    })
}

pub fn record_sources(t: &Bookkeeping, v: &ViewInfo, sources: &SourceStates) {
    t.as_owner(|| {
        let oids: Vec<i64> = sources.keys().map(|&o| o as i64).collect();
        let writes: Vec<i64> = sources.values().map(|s| s.writes).collect();
        let files: Vec<i64> = sources.values().map(|s| s.filenode as i64).collect();
        own_sql::run_prepared(
            &format!(
                "WITH gone AS (DELETE FROM {t} WHERE matview OPERATOR(pg_catalog.=) $1::pg_catalog.oid \
                 AND source::pg_catalog.int8 OPERATOR(pg_catalog.<>) ALL ($2)) \
             INSERT INTO {t} (matview, source, writes, filenode, recorded_at) \
             SELECT $1::pg_catalog.oid, s::pg_catalog.oid, w, f::pg_catalog.oid, pg_catalog.clock_timestamp() \
             FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4)) AS x(s, w, f) \
             ON CONFLICT (matview, source) DO UPDATE \
               SET writes = excluded.writes, filenode = excluded.filenode, recorded_at = excluded.recorded_at",
                t = t.sources_table
            ),
            &[INT8, INT8_ARRAY, INT8_ARRAY, INT8_ARRAY],
            &[
                (v.oid.to_u32() as i64).into(),
                oids.into(),
                writes.into(),
                files.into(),
            ],
            |_| (),
        );
    })
}

// The tables written here, and the COMMENTs of the folder's functions (hence the requires).
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
