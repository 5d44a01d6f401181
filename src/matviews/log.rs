//! The refresh workers' bookkeeping: their transactions, the log rows, and the source snapshots
//! behind only_if_changed. Written as the extension's owner, one transaction per view, with
//! every function and operator pg_catalog-qualified (the worker pins its search_path too).

use crate::matviews::refresh::mode_word;
use crate::matviews::{REFERENCES, ViewInfo};
use crate::own_sql::{self, col};
use pgrx::prelude::*;
use runbook_core::matviews::{Outcome, SourceState};
use std::collections::BTreeMap;
use std::ffi::c_int;

pub fn begin() {
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
}

pub fn commit() {
    unsafe {
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
        // A worker has no idle loop to flush its statistics; flush them so the next view's
        // source counters (and the next run's) include this refresh's writes.
        pg_sys::pgstat_report_stat(true);
    }
}

/// Runs `f` as the extension's owner, then switches back; an ERROR inside is cleaned up by the
/// transaction's abort, which restores the user.
pub fn as_owner<R>(t: &Tables, f: impl FnOnce() -> R) -> R {
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            t.owner,
            context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as c_int,
        );
    }
    let result = f();
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    result
}

/// Bookkeeping transactions (the run's row, skipped and unchanged log rows) need not wait for
/// their WAL flush: losing one in a crash is harmless, and each would otherwise cost a disk flush
/// that a bare REFRESH does not pay. Refreshes and failures keep synchronous_commit as configured.
pub fn without_flush_wait() {
    own_sql::set_local("synchronous_commit", "off");
}

/// The extension's tables, qualified once per run.
pub struct Tables {
    /// The extension's owner: the worker writes its bookkeeping as this role (as a SECURITY
    /// DEFINER function would), so a caller needs no privileges on these tables.
    pub owner: pg_sys::Oid,
    pub log: String,
    pub sources: String,
    pub runs: String,
    /// The role the refreshes run as (the caller's), recorded in each log row.
    pub role: String,
    /// This worker's number in its run (1-based), recorded in each log row.
    pub worker: i32,
}

/// Writes one log row in its own transaction (for views not refreshed: skipped, failed).
#[allow(clippy::too_many_arguments)]
pub fn log_row(
    t: &Tables,
    run_id: i64,
    v: &ViewInfo,
    concurrent: bool,
    outcome: Outcome,
    ms: f64,
    rows: Option<i64>,
    err: Option<&str>,
) {
    begin();
    if outcome != Outcome::Failed {
        without_flush_wait();
    }
    insert_log(t, run_id, v, concurrent, outcome, ms, rows, err);
    commit();
}

#[allow(clippy::too_many_arguments)]
pub fn insert_log(
    t: &Tables,
    run_id: i64,
    v: &ViewInfo,
    concurrent: bool,
    outcome: Outcome,
    ms: f64,
    rows: Option<i64>,
    err: Option<&str>,
) {
    as_owner(t, || {
        own_sql::run_prepared(
            &format!(
                "INSERT INTO {} (run_id, schemaname, matview, mode, status, started_at, finished_at, \
                             duration_ms, rows_after, error, worker, refreshed_by) \
             VALUES ($1, $2, $3, $4, $5, \
                     pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) \
                       pg_catalog.make_interval(secs => $6 OPERATOR(pg_catalog./) 1000.0::pg_catalog.float8), \
                     pg_catalog.clock_timestamp(), $6, $7, $8, $9, $10)",
                t.log
            ),
            &[INT8, TEXT, TEXT, TEXT, TEXT, FLOAT8, INT8, TEXT, INT4, TEXT],
            &[
                run_id.into(),
                v.schema.as_str().into(),
                v.name.as_str().into(),
                mode_word(concurrent).into(),
                outcome.as_str().into(),
                ms.into(),
                rows.into(),
                err.into(),
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
pub type Sources = BTreeMap<u32, SourceState>;

/// The source relations of each of `views` (keyed by view oid): the tables and views it reads,
/// through views, and the partitions of partitioned ones. Read once per run, with the views.
pub fn sources_of_views(views: &[pg_sys::Oid]) -> BTreeMap<u32, Vec<i64>> {
    let sql = format!(
        "{REFERENCES}, rels AS ( \
           SELECT mv, rel FROM refs \
           UNION SELECT refs.mv, p.relid FROM refs \
             JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) refs.rel \
              AND c.relkind OPERATOR(pg_catalog.=) 'p', \
             LATERAL pg_catalog.pg_partition_tree(c.oid) p) \
         SELECT rels.mv::pg_catalog.int8, c.oid::pg_catalog.int8 \
         FROM rels JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) rels.rel \
          AND c.relkind OPERATOR(pg_catalog.=) ANY ('{{r,m,p,f}}'::pg_catalog.\"char\"[])"
    );
    let ids: Vec<i64> = views.iter().map(|o| o.to_u32() as i64).collect();
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
pub fn source_states(t: &Tables, v: &ViewInfo, sources: &[i64]) -> (Sources, Sources) {
    as_owner(t, || {
        let sql = format!(
            "SELECT true, c.oid::pg_catalog.int8, pg_catalog.pg_stat_get_tuples_inserted(c.oid) \
                OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_tuples_updated(c.oid) \
                OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_tuples_deleted(c.oid), \
                c.relfilenode::pg_catalog.int8 \
         FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[]) \
         UNION ALL \
         SELECT false, source::pg_catalog.int8, writes, filenode::pg_catalog.int8 FROM {} \
         WHERE matview OPERATOR(pg_catalog.=) $2::pg_catalog.oid",
            t.sources
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
        let mut now = Sources::new();
        let mut before = Sources::new();
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

pub fn record_sources(t: &Tables, v: &ViewInfo, sources: &Sources) {
    as_owner(t, || {
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
                t = t.sources
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
