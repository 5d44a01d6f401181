//! `cache_stats()`: the cache at a glance, from the tables and the counters in shared memory.

// pgrx needs each #[pg_extern] signature to spell out its row type (it does not resolve aliases).
#![allow(clippy::type_complexity)]

use crate::own_sql::{self, col};
use crate::shmem;
use pgrx::prelude::*;

/// The cache at a glance. Hits, misses and drained events count since the server started.
#[pg_extern(volatile)]
fn cache_stats() -> TableIterator<
    'static,
    (
        name!(entries, i64),
        name!(expired_entries, i64),
        name!(hits, i64),
        name!(misses, i64),
        name!(hit_rate_pct, Option<f64>),
        name!(queue_depth, i64),
        name!(oldest_event_age, Option<Interval>),
        name!(events_drained_total, i64),
        name!(last_worker_drain_at, Option<TimestampWithTimeZone>),
    ),
> {
    let schema = own_sql::ext_schema();
    // Counts only: computed as the extension's owner, since readers have no right on the tables.
    let (entries, expired, depth, oldest) = own_sql::as_extension_owner(|| {
        own_sql::select_one(
            &format!(
                "SELECT (SELECT count(*) FROM {schema}.query_cache), \
                    (SELECT count(*) FROM {schema}.query_cache WHERE expires_at <= now()), \
                    (SELECT count(*) FROM {schema}.cache_invalidation_queue), \
                    (SELECT now() - min(enqueued_at) FROM {schema}.cache_invalidation_queue)"
            ),
            &[],
            |r| {
                (
                    col::<i64>(r, 1).unwrap_or(0),
                    col::<i64>(r, 2).unwrap_or(0),
                    col::<i64>(r, 3).unwrap_or(0),
                    col::<Interval>(r, 4),
                )
            },
        )
    });
    let s = shmem::cache_counters();
    let lookups = s.hits + s.misses;
    let rate = (lookups > 0).then(|| (s.hits as f64 * 1000.0 / lookups as f64).round() / 10.0);
    let last = last_worker_drain_at();
    TableIterator::once((
        entries,
        expired,
        s.hits as i64,
        s.misses as i64,
        rate,
        depth,
        oldest,
        s.drained as i64,
        last,
    ))
}

/// When the worker serving this database last drained events.
fn last_worker_drain_at() -> Option<TimestampWithTimeZone> {
    shmem::find(crate::backend::database()).and_then(|slot| shmem::slot_time(slot.last_drain_at))
}
