//! The background workers: a launcher (registered in `_PG_init` when the library is preloaded)
//! that starts one dynamic worker per database to serve, within `pg_runbook.max_workers`, and
//! the per-database worker's loop. They own no logic: the work is `cache::drain_step` and the
//! SQL functions `rollup_metrics()`, `clean_expired_cache()` and `prune_mv_refresh_log()`.
//!
//! Shared memory (`shared`) holds one slot per database: what `worker_status()` shows, the
//! worker's PGPROC number (an enqueue sets its latch at commit), and the cache counters of
//! `cache_stats()`.

mod database;
mod launcher;
mod shared;

use pgrx::prelude::*;
use std::cell::Cell;

pub use launcher::init_preloaded;

/// This database's cache counters since the server started.
#[derive(Copy, Clone, Default)]
pub struct Counters {
    pub hits: u64,
    pub misses: u64,
    pub drained: u64,
}

thread_local! {
    /// Without shared_preload_libraries: this backend's own counters.
    static LOCAL: Cell<Counters> = Cell::new(Counters::default());
    static FULL_WARNED: Cell<bool> = const { Cell::new(false) };
}

fn with_counters(f: impl FnOnce(&mut Counters)) {
    if !shared::ready() {
        LOCAL.with(|c| {
            let mut v = c.get();
            f(&mut v);
            c.set(v);
        });
        return;
    }
    let db = crate::backend::database();
    let kept = shared::with_database(db, |slot| {
        let mut c = Counters {
            hits: slot.hits,
            misses: slot.misses,
            drained: slot.drained,
        };
        f(&mut c);
        (slot.hits, slot.misses, slot.drained) = (c.hits, c.misses, c.drained);
    });
    if !kept && !FULL_WARNED.with(|w| w.replace(true)) {
        pgrx::warning!(
            "pg_runbook: shared memory has room for {} databases (pg_runbook.max_databases), all taken: this database's cache counters are not kept",
            shared::capacity()
        );
    }
}

pub fn note_cache_hit() {
    with_counters(|c| c.hits += 1);
}

pub fn note_cache_miss() {
    with_counters(|c| c.misses += 1);
}

/// Adds committed drained events (called at commit by the cache's transaction callback).
pub fn note_drained(events: u64) {
    if events > 0 {
        with_counters(|c| c.drained += events);
    }
}

/// This database's cache counters since the server started.
pub fn database_counters() -> Counters {
    let mut out = Counters::default();
    with_counters(|c| out = *c);
    out
}

/// When the worker serving this database last drained events.
pub fn last_worker_drain_at() -> Option<TimestampWithTimeZone> {
    shared::find(crate::backend::database()).and_then(|s| timestamp(s.last_drain_at))
}

/// Sets the latch of the worker serving `database`, if one runs.
pub fn wake(database: pg_sys::Oid) {
    let procno = shared::find(database)
        .filter(|s| s.pid != 0 && s.procno >= 0)
        .map(|s| s.procno);
    if let Some(procno) = procno {
        // SAFETY: procno was published by the live worker from its own PGPROC; PGPROCs are never
        // freed, and setting the latch of a process that has just exited is harmless.
        unsafe {
            let proc_ = (*pg_sys::ProcGlobal).allProcs.add(procno as usize);
            pg_sys::SetLatch(&mut (*proc_).procLatch);
        }
    }
}

fn timestamp(micros: i64) -> Option<TimestampWithTimeZone> {
    if micros == 0 {
        return None;
    }
    unsafe { TimestampWithTimeZone::from_datum(micros.into(), false) }
}

/// The databases the launcher serves or was asked to serve, and what each worker is doing.
#[pg_extern(volatile)]
fn worker_status() -> TableIterator<
    'static,
    (
        name!(pid, Option<i32>),
        name!(database, String),
        name!(state, String),
        name!(last_drain_at, Option<TimestampWithTimeZone>),
        name!(events_drained_total, i64),
        name!(last_error, Option<String>),
        name!(last_error_at, Option<TimestampWithTimeZone>),
        name!(naptime_ms, i32),
    ),
> {
    if !shared::ready() {
        pgrx::notice!("pg_runbook is not in shared_preload_libraries: no worker runs");
        return TableIterator::new(Vec::new());
    }
    let rows: Vec<_> = shared::snapshot()
        .into_iter()
        .filter(|s| s.managed)
        .map(|s| {
            (
                (s.pid != 0).then_some(s.pid),
                s.name(),
                s.state.name().to_string(),
                timestamp(s.last_drain_at),
                s.worker_drained as i64,
                s.error(),
                timestamp(s.last_error_at),
                s.naptime_ms,
            )
        })
        .collect();
    TableIterator::new(rows)
}

pgrx::extension_sql!(
    "COMMENT ON FUNCTION @extschema@.worker_status() IS \
     'pg_runbook background workers, one row per database served or asked for: pid (NULL when none runs), database, state (starting, waiting for CREATE EXTENSION, idle, draining, rolling up, cleaning up, backing off, unserved, disabled, standby, stopped), last drain, events drained, last error or reason, naptime. For runbook_reader';",
    name = "worker_status_comment",
    requires = [worker_status]
);
