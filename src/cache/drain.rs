//! The drain of the invalidation queue, one loop for every caller: the SQL function
//! `drain_cache_invalidation_queue` (its batches are subtransactions of the caller's one
//! transaction) and the background worker (a transaction per batch) both run `drain_batches`;
//! the procedure `drain_cache_invalidation_queue_batches`, whose PL/pgSQL loop commits after each
//! call, steps through the same batches with `drain_cache_invalidation_batch` (one batch and
//! `runbook_core::drain::next`).
//!
//! A batch is one set-based statement, its plans (with and without row locks, see `Claiming`)
//! prepared once per backend: it claims events, finds the cache rows they name, deletes them
//! (tagged rows in chunks of `pg_runbook.drain_max_entries`) and the events whose rows are all
//! gone, and counts the finished events toward `cache_stats()` when the transaction commits.

use super::at_commit::count_drained_at_commit;
use crate::error;
use crate::own_sql::{self, col};
use pgrx::PgOid;
use pgrx::prelude::*;
use runbook_core::drain::{BatchOutcome, Cursor, next, tags_per_batch};

const MAX_BATCH: i32 = 100_000;
/// How long an optimistic batch waits for a row or table another session holds before it gives
/// way to the row-locking one.
const OPTIMISTIC_WAIT: &str = "10ms";
/// After a batch met another session's row, this backend claims with row locks for this long:
/// drainers that meet once are likely to meet again.
const CONTENTION_MEMORY: std::time::Duration = std::time::Duration::from_secs(10);

/// How a batch keeps other sessions off the rows it works on.
#[derive(Clone, Copy)]
enum Claiming {
    /// Every event and cache row is locked FOR UPDATE SKIP LOCKED before it is deleted: a row
    /// another session holds is skipped (its event stays queued), never waited for.
    RowLocks,
    /// The rows are deleted without locking them first, which writes half the WAL records when
    /// nobody else drains. Meeting a row another session holds makes the statement wait, so it
    /// runs under a lock_timeout of OPTIMISTIC_WAIT in a subtransaction, and a batch that times
    /// out is rolled back and done again with row locks.
    Optimistic,
}

impl Claiming {
    fn row_locks(self) -> &'static str {
        match self {
            Claiming::RowLocks => " FOR UPDATE SKIP LOCKED",
            Claiming::Optimistic => "",
        }
    }
}

thread_local! {
    /// When this backend's last optimistic batch gave way to another session.
    static CONTENDED_AT: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

fn contended_recently() -> bool {
    CONTENDED_AT.with(|c| c.get().is_some_and(|at| at.elapsed() < CONTENTION_MEMORY))
}

/// Claims up to `size` events with id > `after_id` and finishes what it can in one statement, its
/// plan kept: malformed events are moved aside; the cache rows named by key, and up to
/// `max_entries` rows named by tag, are deleted (with row locks: those not held by another
/// session). An event is deleted only when every row it names is gone: one whose row another
/// session holds (another drainer, a cache_get counting a hit) or changed since the snapshot, or
/// whose tag has more rows than this batch's chunk, stays queued for a later batch. So drainers
/// never wait for each other, and no statement holds query_cache for longer than one chunk.
fn batch_statement(
    schema: &str,
    after_id: i64,
    size: i32,
    max_entries: i32,
    claiming: Claiming,
) -> BatchOutcome {
    // Tag events claimed here also take the other queued events for the same tag (up to 100
    // batches' worth): deleting the tagged entries once does what all of them ask. A batch works
    // on at most tags_per_batch tags and `per_tag` entries of each; the probe reads one row more
    // than it may delete, so a tag whose probe rows are all locked and deleted has no entry left
    // in this statement's snapshot (a later entry was stored after the event and is not stale).
    // A cache row updated since the snapshot fails the ctid recheck of the locking scan (with row
    // locks) or of the delete (without), so it is not in `gone` and its event is retried. Rows are
    // deleted by ctid, which a locked row keeps.
    let lock = claiming.row_locks();
    let sql = format!(
        "WITH claimed AS MATERIALIZED ( \
           SELECT ctid AS row_id, id, cache_key, tag FROM {schema}.cache_invalidation_queue \
           WHERE id OPERATOR(pg_catalog.>) $1 ORDER BY id LIMIT $2{lock}), \
         tag_list AS MATERIALIZED ( \
           SELECT DISTINCT tag FROM claimed WHERE cache_key IS NULL AND tag IS NOT NULL \
           ORDER BY tag LIMIT $4), \
         per_tag AS MATERIALIZED ( \
           SELECT greatest($3::pg_catalog.int8 OPERATOR(pg_catalog./) \
                  greatest((SELECT pg_catalog.count(*) FROM tag_list), 1), 1) AS n), \
         same_tag AS MATERIALIZED ( \
           SELECT q.ctid AS row_id, q.id, q.cache_key, q.tag FROM {schema}.cache_invalidation_queue q \
           WHERE q.tag OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT tag FROM tag_list)) AND q.cache_key IS NULL \
           LIMIT $2 OPERATOR(pg_catalog.*) 100{lock}), \
         key_cand AS MATERIALIZED ( \
           SELECT c.ctid AS row_id, c.cache_key FROM {schema}.query_cache c \
           WHERE c.cache_key OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT cache_key FROM claimed \
                 WHERE cache_key IS NOT NULL AND tag IS NULL))), \
         tag_cand AS MATERIALIZED ( \
           SELECT t.tag, p.row_id, p.rn FROM tag_list t CROSS JOIN LATERAL ( \
             SELECT c.ctid AS row_id, pg_catalog.row_number() OVER () AS rn FROM ( \
               SELECT c.ctid FROM {schema}.query_cache c \
               WHERE c.tags OPERATOR(pg_catalog.@>) ARRAY[t.tag] \
               LIMIT (SELECT n OPERATOR(pg_catalog.+) 1 FROM per_tag)) c) p), \
         locked AS MATERIALIZED ( \
           SELECT c.ctid AS row_id FROM {schema}.query_cache c \
           WHERE c.ctid OPERATOR(pg_catalog.=) ANY (ARRAY( \
               SELECT row_id FROM key_cand UNION ALL \
               SELECT row_id FROM tag_cand WHERE rn OPERATOR(pg_catalog.<=) (SELECT n FROM per_tag))) \
           {lock}), \
         gone AS ( \
           DELETE FROM {schema}.query_cache c \
           WHERE c.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT row_id FROM locked)) \
           RETURNING c.ctid AS row_id, c.cache_key, c.query_sql, c.tags, \
                     c.expires_at OPERATOR(pg_catalog.-) c.created_at AS ttl, c.hits, \
                     c.owner_role, c.query_search_path), \
         held_keys AS MATERIALIZED ( \
           SELECT k.cache_key FROM key_cand k \
           WHERE NOT EXISTS (SELECT 1 FROM gone g WHERE g.row_id OPERATOR(pg_catalog.=) k.row_id)), \
         open_tags AS MATERIALIZED ( \
           SELECT t.tag FROM tag_cand t \
           WHERE NOT EXISTS (SELECT 1 FROM gone g WHERE g.row_id OPERATOR(pg_catalog.=) t.row_id)), \
         done AS MATERIALIZED ( \
           SELECT e.row_id, e.id FROM (SELECT * FROM claimed UNION SELECT * FROM same_tag) e \
           WHERE CASE \
             WHEN (e.cache_key IS NULL) OPERATOR(pg_catalog.=) (e.tag IS NULL) THEN true \
             WHEN e.cache_key IS NOT NULL THEN NOT EXISTS (SELECT 1 FROM held_keys h \
                  WHERE h.cache_key OPERATOR(pg_catalog.=) e.cache_key) \
             ELSE EXISTS (SELECT 1 FROM tag_list t WHERE t.tag OPERATOR(pg_catalog.=) e.tag) \
                  AND NOT EXISTS (SELECT 1 FROM open_tags o WHERE o.tag OPERATOR(pg_catalog.=) e.tag) \
           END), \
         ev AS ( \
           DELETE FROM {schema}.cache_invalidation_queue \
           WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT row_id FROM done)) \
           RETURNING id, cache_key, tag, enqueued_at, reason), \
         rejected AS ( \
           INSERT INTO {schema}.cache_invalidation_rejected (id, cache_key, tag, enqueued_at, reason, problem) \
           SELECT id, cache_key, tag, enqueued_at, reason, \
                  CASE WHEN cache_key IS NULL AND tag IS NULL THEN 'neither cache_key nor tag is set' \
                       ELSE 'both cache_key and tag are set' END \
           FROM ev WHERE (cache_key IS NULL) OPERATOR(pg_catalog.=) (tag IS NULL) \
           ON CONFLICT (id) DO NOTHING RETURNING id), \
         remembered AS ( \
           INSERT INTO {schema}.query_cache_stale AS s (cache_key, query_sql, tags, ttl, hits, owner_role, query_search_path) \
           SELECT DISTINCT ON (cache_key) cache_key, query_sql, tags, ttl, hits, owner_role, query_search_path \
           FROM gone WHERE query_sql IS NOT NULL ORDER BY cache_key \
           ON CONFLICT (cache_key) DO UPDATE SET query_sql = excluded.query_sql, tags = excluded.tags, \
             ttl = excluded.ttl, hits = greatest(s.hits, excluded.hits), invalidated_at = pg_catalog.now(), \
             owner_role = excluded.owner_role, query_search_path = excluded.query_search_path \
           RETURNING 1) \
         SELECT (SELECT pg_catalog.count(*) FROM ev), (SELECT pg_catalog.count(*) FROM claimed), \
                (SELECT pg_catalog.count(*) FROM claimed c WHERE NOT EXISTS \
                   (SELECT 1 FROM done d WHERE d.id OPERATOR(pg_catalog.=) c.id)), \
                (SELECT pg_catalog.count(*) FROM gone), \
                coalesce((SELECT pg_catalog.max(id) FROM claimed), $1), \
                (SELECT pg_catalog.count(*) FROM rejected), (SELECT pg_catalog.count(*) FROM remembered)"
    );
    let int4 = PgOid::BuiltIn(PgBuiltInOids::INT4OID);
    let tags = tags_per_batch(max_entries as i64);
    let outcome = own_sql::run_prepared(
        &sql,
        &[
            PgOid::BuiltIn(PgBuiltInOids::INT8OID),
            int4,
            int4,
            PgOid::BuiltIn(PgBuiltInOids::INT8OID),
        ],
        &[
            after_id.into(),
            size.into(),
            max_entries.into(),
            tags.into(),
        ],
        |r| {
            let n = |i| col::<i64>(r, i).unwrap_or(0);
            BatchOutcome {
                events_done: n(1),
                claimed: n(2),
                unfinished: n(3),
                entries_deleted: n(4),
                max_id: col::<i64>(r, 5).unwrap_or(after_id),
                rejected: n(6),
            }
        },
    )
    .into_iter()
    .next()
    .unwrap_or_default();
    count_drained_at_commit(outcome.events_done);
    outcome
}

/// One batch as the extension's own statement, under the pinned search_path, with the
/// batch-size settings in force: optimistic first (see `Claiming`), unless this backend met
/// another drainer lately; with row locks, under pg_runbook.lock_timeout, when it gives way.
fn one_batch(schema: &str, after_id: i64, batch_size: i32) -> BatchOutcome {
    let max_entries = crate::settings::DRAIN_MAX_ENTRIES.get();
    if !contended_recently() {
        let schema = schema.to_string();
        let optimistic = own_sql::in_subtransaction(move || {
            own_sql::with_settings(
                &[
                    ("search_path", own_sql::OWN_SEARCH_PATH.into()),
                    ("lock_timeout", OPTIMISTIC_WAIT.into()),
                ],
                || {
                    batch_statement(
                        &schema,
                        after_id,
                        batch_size,
                        max_entries,
                        Claiming::Optimistic,
                    )
                },
            )
        });
        match optimistic {
            Ok(outcome) => return outcome,
            Err(e) => {
                pgrx::debug1!("pg_runbook: drain batch gave way to another session: {e}");
                CONTENDED_AT.with(|c| c.set(Some(std::time::Instant::now())));
            }
        }
    }
    own_sql::with_lock_timeout(|| {
        own_sql::with_settings(&[("search_path", own_sql::OWN_SEARCH_PATH.into())], || {
            batch_statement(
                schema,
                after_id,
                batch_size,
                max_entries,
                Claiming::RowLocks,
            )
        })
    })
}

/// One batch for the background worker, in the transaction it opened: None when the extension
/// is not created in this database.
pub fn one_batch_if_installed(after_id: i64, batch_size: i32) -> Option<BatchOutcome> {
    own_sql::ext_schema_if_installed().map(|schema| one_batch(&schema, after_id, batch_size))
}

/// The drain loop itself is pure bookkeeping, kept (and tested) in the core crate; the worker
/// calls it from here.
pub use runbook_core::drain::drain_batches;

/// Drains until the queue is empty or `max_seconds` have passed (at least one batch); returns the
/// number of events processed. Each batch runs in a subtransaction: when one fails (a migration's
/// lock on the queue outlasting lock_timeout) the call stops with a WARNING and keeps the batches
/// it finished, which commit with the caller's transaction.
fn drain_in_transaction(schema: &str, batch_size: i32, max_seconds: i32) -> i64 {
    let started = std::time::Instant::now();
    let budget = std::time::Duration::from_secs(max_seconds as u64);
    let (total, failure) = drain_batches(
        batch_size,
        |after_id| {
            let schema = schema.to_string();
            own_sql::in_subtransaction(move || one_batch(&schema, after_id, batch_size))
        },
        |b| {
            warn_rejected(b);
            if started.elapsed() >= budget {
                return false;
            }
            pgrx::check_for_interrupts!();
            true
        },
    );
    if let Some(e) = failure {
        pgrx::warning!(
            "pg_runbook: drain stopped early after {total} event(s), which are kept: {e}"
        );
    }
    total
}

/// Tells a caller of the drain about malformed events (the worker records them in
/// worker_status instead).
fn warn_rejected(b: &BatchOutcome) {
    if b.rejected > 0 {
        pgrx::warning!(
            "pg_runbook: moved {} malformed cache invalidation event(s) to cache_invalidation_rejected",
            b.rejected
        );
    }
}

fn valid_batch_size(batch_size: Option<i32>) -> i32 {
    let batch_size = error::required("batch_size", batch_size);
    if !(1..=MAX_BATCH).contains(&batch_size) {
        error::invalid_argument(
            "batch_size",
            format!("must be between 1 and {MAX_BATCH}, got {batch_size}"),
        );
    }
    batch_size
}

/// Processes queued invalidations: each batch of `batch_size` events is claimed without waiting
/// for another drainer, the entries they name are deleted, and so are the events. Stops when the queue is
/// empty or `max_seconds` have passed; returns the number of events processed. The whole call is
/// the caller's one transaction: for a large drain use the procedure
/// drain_cache_invalidation_queue_batches, which commits each batch.
#[pg_extern(volatile)]
fn drain_cache_invalidation_queue(
    batch_size: default!(Option<i32>, 100),
    max_seconds: default!(Option<i32>, 60),
) -> i64 {
    let batch_size = valid_batch_size(batch_size);
    let max_seconds = error::required("max_seconds", max_seconds);
    if max_seconds < 0 {
        error::invalid_argument(
            "max_seconds",
            format!("must not be negative, got {max_seconds}"),
        );
    }
    let schema = own_sql::ext_schema();
    drain_in_transaction(&schema, batch_size, max_seconds)
}

/// One batch of the drain, for the drain procedure's loop (which commits after each): claims
/// events with id above `after_id` and returns the events finished, where the next batch starts
/// (NULL when the drain is over) and whether the drain has progressed since it last started
/// over (the procedure passes it back with the next call).
#[pg_extern(volatile)]
fn drain_cache_invalidation_batch(
    batch_size: Option<i32>,
    after_id: Option<i64>,
    progressed: default!(Option<bool>, false),
) -> TableIterator<
    'static,
    (
        name!(events, i64),
        name!(next_after_id, Option<i64>),
        name!(progressed, bool),
    ),
> {
    let batch_size = valid_batch_size(batch_size);
    let after_id = error::required("after_id", after_id);
    if after_id < 0 {
        error::invalid_argument("after_id", format!("must not be negative, got {after_id}"));
    }
    let cursor = Cursor {
        after_id,
        progressed: error::required("progressed", progressed),
    };
    let schema = own_sql::ext_schema();
    let b = one_batch(&schema, after_id, batch_size);
    warn_rejected(&b);
    let following = next(cursor, batch_size as i64, &b);
    TableIterator::once((
        b.events_done,
        following.map(|c| c.after_id),
        following.is_some_and(|c| c.progressed),
    ))
}
