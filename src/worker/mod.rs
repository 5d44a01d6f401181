//! The background workers: a launcher (registered in `_PG_init` when the library is preloaded)
//! that starts one dynamic worker per database to serve, within `pg_runbook.max_workers`, and
//! the per-database worker's loop. They own no logic of their own: the drain is the cache's
//! (`cache::drain`), and the periodic jobs are listed in `jobs` (Rust functions called directly,
//! SQL functions resolved by their signature).
//!
//! What they share with other processes (each database's slot: what `worker_status()` shows, the
//! worker's latch) lives in `crate::shmem`. The worker offers the others only `worker_status()`.

// pgrx needs each #[pg_extern] signature to spell out its row type (it does not resolve aliases).
#![allow(clippy::type_complexity)]

mod database;
mod jobs;
mod launcher;

use crate::shmem;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use std::time::Instant;

pub use launcher::register_launcher;

/// Shows what this worker does now in pg_stat_activity (its state and query columns).
fn report_activity(state: pg_sys::BackendState::Type, text: &str) {
    let text = std::ffi::CString::new(text).unwrap_or_default();
    // SAFETY: pgstat_report_activity copies the text into this backend's status entry.
    unsafe { pg_sys::pgstat_report_activity(state, text.as_ptr()) };
}

/// Applies a configuration reload (SIGHUP): pgrx 0.18 sets a flag and reloads nothing itself.
fn reload_configuration() {
    // SAFETY: the documented way to apply a reload in a worker, between units of work.
    unsafe {
        pg_sys::ConfigReloadPending = 0;
        pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
    }
}

/// Waits until `deadline`, looping: a wake-up from an enqueue or a signal must not cut a backoff
/// short. With `stop_on_latch` a set latch (an enqueue's wake, SIGHUP) ends the wait at once.
/// False when the worker should leave.
fn nap_until(deadline: Instant, stop_on_latch: bool) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return !crate::backend::shutdown_requested();
        }
        if !BackgroundWorker::wait_latch(Some(left)) || crate::backend::shutdown_requested() {
            return false;
        }
        if stop_on_latch {
            return true;
        }
    }
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
    if !shmem::ready() {
        pgrx::notice!("pg_runbook is not in shared_preload_libraries: no worker runs");
        return TableIterator::new(Vec::new());
    }
    let rows: Vec<_> = shmem::snapshot()
        .into_iter()
        .filter(|s| s.managed)
        .map(|s| {
            (
                (s.pid != 0).then_some(s.pid),
                s.name(),
                s.state.name().to_string(),
                shmem::slot_time(s.last_drain_at),
                s.worker_drained as i64,
                s.error(),
                shmem::slot_time(s.last_error_at),
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
