//! `rollup_metrics()`, which folds new raw rows into 5-minute rollups with one set-based
//! statement.
//!
//! The watermark is transaction visibility, not an id: a run folds exactly the raw rows visible to
//! its snapshot that were not visible to the previous run's snapshot (stored in
//! metrics_rollup_state), so a transaction that inserted low ids and commits after a run is folded
//! by the next one, exactly once. `id_floor` only limits the scan: it is the id sequence's value at
//! a past run that happened before every transaction still running had started, so no row at or
//! below it can still appear.

use crate::own_sql::{self, col};
use crate::settings;
use pgrx::prelude::*;

/// The previous run's snapshot, as ages relative to this transaction (`age(xid)` is stable within
/// a transaction, and comparing ages handles xid wraparound the way PostgreSQL does).
struct Watermark {
    id_floor: i64,
    /// No previous run: everything above the floor is new.
    first_run: bool,
    age_xmin: i32,
    age_xmax: i32,
    age_xip: Vec<i32>,
    age_run_xid: i32,
}

/// Locks the state row; `None` when another rollup holds it.
fn lock_watermark(schema: &str) -> Option<Watermark> {
    let to_xid = |e: &str| format!("pg_catalog.age((({e})::text::int8 % 4294967296)::text::xid)");
    let sql = format!(
        "SELECT id_floor, folded_snapshot IS NULL, \
                {xmin}, {xmax}, \
                ARRAY(SELECT {xip} FROM pg_catalog.pg_snapshot_xip(folded_snapshot) x), \
                {run} \
         FROM {schema}.metrics_rollup_state FOR UPDATE SKIP LOCKED",
        xmin = to_xid("pg_catalog.pg_snapshot_xmin(folded_snapshot)"),
        xmax = to_xid("pg_catalog.pg_snapshot_xmax(folded_snapshot)"),
        xip = to_xid("x"),
        run = to_xid("run_xid"),
    );
    Spi::connect_mut(|client| {
        let rows = own_sql::spi("locking the rollup state", client.update(&sql, None, &[]));
        rows.into_iter().next().map(|r| {
            let first_run = col::<bool>(&r, 2).unwrap_or(true);
            Watermark {
                id_floor: col::<i64>(&r, 1).unwrap_or(0),
                first_run,
                age_xmin: col::<i32>(&r, 3).unwrap_or(i32::MAX),
                age_xmax: col::<i32>(&r, 4).unwrap_or(i32::MAX),
                age_xip: col::<Vec<i32>>(&r, 5).unwrap_or_default(),
                age_run_xid: col::<i32>(&r, 6).unwrap_or(i32::MIN),
            }
        })
    })
}

/// The start of the oldest transaction that may still insert rows it has already taken ids for
/// (any session holding an xid or a snapshot); '-infinity' when that cannot be known (a prepared
/// transaction, or sessions whose details this role may not see).
const OLDEST_WRITER_SQL: &str = "\
    SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_xacts) OR bool_or(xact_start IS NULL) \
                THEN '-infinity'::timestamptz ELSE min(xact_start) END \
    FROM pg_catalog.pg_stat_activity \
    WHERE backend_xid IS NOT NULL OR backend_xmin IS NOT NULL \
       OR (state IS NULL AND backend_type = 'client backend')";

/// The one statement that folds, records the snapshot, and prunes. Everything it reads and writes
/// uses one snapshot: rows visible to it are folded now (or were before) and only those may be
/// pruned.
fn fold_sql(schema: &str) -> String {
    format!(
        "WITH state AS ( \
           UPDATE {schema}.metrics_rollup_state \
              SET folded_snapshot = pg_catalog.pg_current_snapshot(), run_xid = pg_catalog.pg_current_xact_id(), \
                  last_run_at = pg_catalog.now() \
           RETURNING 1 \
         ), raw AS ( \
           SELECT {schema}.request_rollup(m.created_at, m.endpoint, m.duration_ms, m.status_code, m.cache_hit) AS r \
           FROM {schema}.performance_metrics m \
           WHERE m.id > $1 \
             AND ($2 OR ((pg_catalog.age(m.xmin) <= $4 \
                          OR (pg_catalog.age(m.xmin) <= $3 AND pg_catalog.age(m.xmin) = ANY ($5))) \
                         AND pg_catalog.age(m.xmin) <> $6)) \
         ), folded AS ( \
           SELECT x.* FROM raw, LATERAL {schema}.rollup_rows(raw.r) x \
         ), upsert AS ( \
           INSERT INTO {schema}.performance_analytics_5min AS p (bucket, endpoint, sketch, requests, errors, err_rate, \
                  p50_ms, p95_ms, p99_ms, max_ms, avg_ms, cache_hits, cache_hit_rate_percent) \
           SELECT bucket, endpoint, sketch, requests, errors, err_rate, p50_ms, p95_ms, p99_ms, max_ms, avg_ms, \
                  cache_hits, cache_hit_rate_percent FROM folded \
           ON CONFLICT (bucket, endpoint) DO UPDATE SET (sketch, requests, errors, err_rate, p50_ms, p95_ms, p99_ms, \
                  max_ms, avg_ms, cache_hits, cache_hit_rate_percent) = \
             (SELECT m.m, s.* FROM {schema}.sketch_merge(p.sketch, EXCLUDED.sketch) m, LATERAL {schema}.sketch_stats(m.m) s) \
           RETURNING 1 \
         ), pruned AS ( \
           DELETE FROM {schema}.performance_metrics \
           WHERE created_at < pg_catalog.now() - make_interval(secs => $7) \
           RETURNING 1 \
         ) \
         SELECT (SELECT COALESCE(sum(requests), 0)::int8 FROM folded WHERE endpoint IS NULL), \
                (SELECT count(*) FROM pruned), (SELECT count(*) FROM upsert), (SELECT count(*) FROM state)"
    )
}

/// Folds raw rows that arrived since the last run into performance_analytics_5min (late rows into
/// their own bucket), prunes raw rows older than pg_runbook.metrics_retention, and returns how many
/// rows it folded. Another rollup running at the same time makes this one return 0 at once.
#[pg_extern(volatile, parallel_unsafe, requires = ["metrics"])]
pub fn rollup_metrics() -> i64 {
    let schema = own_sql::ext_schema();
    own_sql::with_lock_timeout(|| {
        let Some(w) = lock_watermark(&schema) else {
            pgrx::notice!("pg_runbook: another rollup_metrics() is running; skipped");
            return 0;
        };
        let oldest_writer: Option<TimestampWithTimeZone> =
            own_sql::select_one(OLDEST_WRITER_SQL, &[], |r| {
                col::<TimestampWithTimeZone>(r, 1)
            });
        let retention_s = settings::METRICS_RETENTION_S.get() as f64;
        // JIT compilation costs more than it saves on this one-aggregate pipeline.
        let planner = [("jit", "off".to_string())];
        let (folded, pruned) = own_sql::with_settings(&planner, || {
            own_sql::select_mut_one(
                &fold_sql(&schema),
                &[
                    w.id_floor.into(),
                    w.first_run.into(),
                    w.age_xmin.into(),
                    w.age_xmax.into(),
                    w.age_xip.into(),
                    w.age_run_xid.into(),
                    retention_s.into(),
                ],
                |r| (col::<i64>(r, 1).unwrap_or(0), col::<i64>(r, 2).unwrap_or(0)),
            )
        });
        // After the fold: ids handed out after `ran_at` are above `seq_value`.
        let log = format!(
            "INSERT INTO {schema}.metrics_rollup_log (seq_value, ran_at, folded, pruned) \
             SELECT COALESCE(pg_catalog.pg_sequence_last_value(pg_catalog.pg_get_serial_sequence('{schema}.performance_metrics', 'id')::regclass), 0), \
                    pg_catalog.clock_timestamp(), $1, $2"
        );
        own_sql::execute(&log, &[folded.into(), pruned.into()]);
        let advance = format!(
            "WITH floor AS ( \
               SELECT ran_at, seq_value FROM {schema}.metrics_rollup_log \
               WHERE ran_at < $1 ORDER BY ran_at DESC LIMIT 1 \
             ), forget AS ( \
               DELETE FROM {schema}.metrics_rollup_log l USING floor WHERE l.ran_at < floor.ran_at \
             ) \
             UPDATE {schema}.metrics_rollup_state s \
                SET id_floor = GREATEST(s.id_floor, floor.seq_value), last_folded = $2, last_pruned = $3 \
             FROM floor"
        );
        own_sql::execute(
            &advance,
            &[oldest_writer.into(), folded.into(), pruned.into()],
        );
        own_sql::execute(
            &format!("UPDATE {schema}.metrics_rollup_state SET last_folded = $1, last_pruned = $2"),
            &[folded.into(), pruned.into()],
        );
        folded
    })
}

pgrx::extension_sql!(
    "COMMENT ON FUNCTION @extschema@.rollup_metrics() IS \
     'Folds raw performance_metrics rows that arrived since the last run (by transaction visibility, so late commits are folded exactly once) into performance_analytics_5min, late rows into their own bucket; prunes raw rows older than pg_runbook.metrics_retention; returns how many rows it folded. Called by the worker every pg_runbook.rollup_interval; users and pg_cron may call it too (a concurrent call returns 0).';",
    name = "metrics_rollup_comment",
    requires = [rollup_metrics]
);

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn rollup_folds_rows_once_and_counts_errors() {
        Spi::run(
            "SELECT record_requests(jsonb_agg(jsonb_build_object('endpoint', '/a', 'duration_ms', i, \
                 'status_code', CASE WHEN i % 10 = 0 THEN 503 ELSE 200 END, 'at', now() - interval '1 hour'))) \
             FROM generate_series(1, 100) i",
        )
        .unwrap();
        assert_eq!(
            Spi::get_one::<i64>("SELECT rollup_metrics()"),
            Ok(Some(100))
        );
        assert_eq!(
            Spi::get_one::<f64>(
                "SELECT err_rate FROM performance_analytics_5min WHERE endpoint IS NULL"
            ),
            Ok(Some(0.1))
        );
    }
}
