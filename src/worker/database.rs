//! The per-database worker, started by the launcher with the database's oid. Each round it
//! drains the invalidation queue with the cache's drain loop (`cache::drain`), one transaction per
//! batch, and runs the periodic jobs of `jobs::JOBS` that are due, each in a transaction of its
//! own. Without the extension it says so and exits; the launcher looks again later.

use super::jobs::{self, Interval, JOBS};
use super::{nap_until, reload_configuration, report_activity};
use crate::backend::{self, shutdown_requested};
use crate::cache::drain;
use crate::shmem::{self, WorkerState};
use crate::{own_sql, settings};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use runbook_core::drain::backoff;
use std::time::{Duration, Instant};

/// The index of this worker's slot in shared memory.
#[derive(Copy, Clone)]
struct MySlot {
    index: usize,
}

fn set_state(me: MySlot, state: WorkerState) {
    shmem::update(me.index, |s| s.state = state);
    show_in_activity(state);
}

/// Shows the current step in pg_stat_activity (state and query columns).
fn show_in_activity(state: WorkerState) {
    let running = |interval: Interval| {
        let names: Vec<&str> = JOBS
            .iter()
            .filter(|j| j.interval == interval)
            .map(|j| j.signature)
            .collect();
        (pg_sys::BackendState::STATE_RUNNING, names.join(", "))
    };
    let (backend_state, text) = match state {
        WorkerState::Draining => (
            pg_sys::BackendState::STATE_RUNNING,
            "draining the cache invalidation queue".to_string(),
        ),
        WorkerState::RollingUp => running(Interval::Rollup),
        WorkerState::Maintenance => running(Interval::Maintenance),
        _ => (pg_sys::BackendState::STATE_IDLE, state.name().to_string()),
    };
    report_activity(backend_state, &text);
}

fn record_error(me: MySlot, what: &str, message: &str) {
    let text = format!("{what}: {message}");
    pgrx::warning!("pg_runbook worker: {text}");
    let at = backend::now_micros();
    shmem::update(me.index, |s| s.set_error(&text, at));
}

/// Runs one unit of work in a transaction of its own. An ERROR inside is caught, the transaction
/// aborted, and the message returned, so the loop carries on.
fn in_own_transaction<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let f = std::panic::AssertUnwindSafe(f);
    let outcome = PgTryBuilder::new(move || {
        let f = f;
        Ok(BackgroundWorker::transaction(std::panic::AssertUnwindSafe(
            move || (f.0)(),
        )))
    })
    .catch_others(|e| Err(own_sql::caught_message(&e)))
    .catch_rust_panic(|e| Err(own_sql::caught_message(&e)))
    .execute();
    if outcome.is_err() {
        // SAFETY: the failed transaction is still open; aborting it is what lets the next begin.
        unsafe { pg_sys::AbortCurrentTransaction() };
    }
    outcome
}

fn reload(me: MySlot) {
    reload_configuration();
    let naptime = settings::NAPTIME_MS.get();
    shmem::update(me.index, |s| s.naptime_ms = naptime);
    log!(
        "pg_runbook worker: configuration reloaded: naptime {} ms, drain_batch_size {}, enabled {}",
        naptime,
        settings::DRAIN_BATCH_SIZE.get(),
        settings::WORKER_ENABLED.get()
    );
}

/// When the jobs last ran, and the failures that make the drain and the jobs back off.
struct Schedule {
    last_rollup: Instant,
    last_maintenance: Instant,
    /// Consecutive failed drains, and failed job rounds: each backs off on its own, so a job
    /// that cannot get its lock does not hold up the drain.
    drain_failures: u32,
    job_failures: u32,
    jobs_not_before: Instant,
}

fn max_backoff() -> Duration {
    Duration::from_millis(settings::MAX_BACKOFF_MS.get() as u64)
}

enum Drained {
    Done,
    NoExtension,
    Failed,
}

/// Drains batch after batch with the cache's drain loop, each batch in a transaction of its own,
/// until the queue has nothing left this round or the worker is asked to leave.
fn drain_round(me: MySlot) -> Drained {
    let batch_size = settings::DRAIN_BATCH_SIZE.get();
    let what = "draining the cache invalidation queue";
    let (_, failure) = drain::drain_batches(
        batch_size,
        |after_id| {
            set_state(me, WorkerState::Draining);
            match in_own_transaction(move || drain::one_batch_if_installed(after_id, batch_size)) {
                Ok(Some(batch)) => Ok(batch),
                Ok(None) => Err(Drained::NoExtension),
                Err(e) => {
                    record_error(me, what, &e);
                    Err(Drained::Failed)
                }
            }
        },
        |batch| {
            if batch.rejected > 0 {
                let why = format!(
                    "moved {} malformed event(s) to cache_invalidation_rejected",
                    batch.rejected
                );
                record_error(me, what, &why);
            }
            if batch.events_done > 0 {
                let at = backend::now_micros();
                shmem::update(me.index, |s| {
                    s.worker_drained += batch.events_done as u64;
                    s.last_drain_at = at;
                });
            }
            !shutdown_requested()
        },
    );
    failure.unwrap_or(Drained::Done)
}

/// Runs the periodic jobs that are due; after a failure they wait out a growing backoff.
fn periodic_jobs(me: MySlot, schedule: &mut Schedule, naptime: Duration) {
    if Instant::now() < schedule.jobs_not_before {
        return;
    }
    let due = |last: Instant, ms: i32| last.elapsed() >= Duration::from_millis(ms as u64);
    let rollup_due = due(schedule.last_rollup, settings::ROLLUP_INTERVAL_MS.get());
    if rollup_due {
        schedule.last_rollup = Instant::now();
    }
    let maintenance_due = due(
        schedule.last_maintenance,
        settings::MAINTENANCE_INTERVAL_MS.get(),
    );
    if maintenance_due {
        schedule.last_maintenance = Instant::now();
    }
    let mut ok = true;
    for job in JOBS.iter().filter(|j| match j.interval {
        Interval::Rollup => rollup_due,
        Interval::Maintenance => maintenance_due,
    }) {
        set_state(me, job.state());
        if let Err(e) = in_own_transaction(|| jobs::run(job)).and_then(|ran| ran) {
            record_error(me, &format!("running {}", job.signature), &e);
            ok = false;
        }
    }
    if ok {
        schedule.job_failures = 0;
    } else {
        schedule.job_failures += 1;
        schedule.jobs_not_before =
            Instant::now() + backoff(schedule.job_failures + 1, naptime, max_backoff());
    }
}

/// Clears the slot's pid when the worker exits (ERROR, FATAL after SIGTERM, or return), so
/// worker_status() never shows a dead process as working.
#[pg_guard]
extern "C-unwind" fn on_exit(_code: std::ffi::c_int, arg: pg_sys::Datum) {
    let index = arg.value();
    shmem::update(index, |s| {
        s.pid = 0;
        s.procno = -1;
        if s.state != WorkerState::WaitingForExtension {
            s.state = WorkerState::Stopped;
        }
    });
}

/// Takes this database's slot and publishes the pid; None when shared memory has no room.
fn take_slot(database: pg_sys::Oid) -> Option<MySlot> {
    let pid = std::process::id() as i32;
    let mut index = None;
    shmem::write(|slots| {
        index = slots.iter().position(|s| s.database == database);
        if let Some(i) = index {
            slots[i].pid = pid;
            slots[i].state = WorkerState::Starting;
            slots[i].naptime_ms = settings::NAPTIME_MS.get();
        }
    });
    let index = index?;
    // SAFETY: registers a plain function, run at exit with the slot index as its argument.
    unsafe { pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(index)) };
    Some(MySlot { index })
}

/// Pins this session's search_path once, before any query: nothing the worker runs resolves
/// through a path an ordinary role could plant objects in.
fn pin_search_path() {
    // SAFETY: SetConfigOption copies both NUL-terminated strings; called outside any
    // transaction, between the connection and the first query.
    unsafe {
        pg_sys::SetConfigOption(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
}

/// Whether the server is a standby (or still replaying WAL): the worker then writes nothing.
fn in_recovery() -> bool {
    // SAFETY: reads the shared recovery state, which any backend may do at any time.
    unsafe { pg_sys::RecoveryInProgress() }
}

#[pg_guard]
// SAFETY: the name is unique in the process; the postmaster finds the worker's entry point by
// it (set_function), and nothing else defines it.
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_runbook_worker_main(arg: pg_sys::Datum) {
    // The launcher passes the database's oid as the argument (ObjectIdGetDatum).
    let database = pg_sys::Oid::from_u32(arg.value() as u32);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    backend::die_on_sigterm();
    let Some(me) = take_slot(database) else {
        return;
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    pin_search_path();
    shmem::publish_latch(me.index);
    let name = shmem::snapshot()[me.index].name();
    log!("pg_runbook worker started for database \"{name}\"");
    let mut schedule = Schedule {
        last_rollup: Instant::now(),
        last_maintenance: Instant::now(),
        drain_failures: 0,
        job_failures: 0,
        jobs_not_before: Instant::now(),
    };
    loop {
        if shutdown_requested() {
            break;
        }
        if BackgroundWorker::sighup_received() {
            reload(me);
        }
        let naptime = Duration::from_millis(settings::NAPTIME_MS.get() as u64);
        if !settings::WORKER_ENABLED.get() {
            set_state(me, WorkerState::Disabled);
        } else if in_recovery() {
            set_state(me, WorkerState::Standby);
        } else {
            let drained = drain_round(me);
            if matches!(drained, Drained::NoExtension) {
                set_state(me, WorkerState::WaitingForExtension);
                log!(
                    "pg_runbook worker: extension pg_runbook is not created in database \"{name}\"; the launcher will look again"
                );
                return;
            }
            if !shutdown_requested() {
                periodic_jobs(me, &mut schedule, naptime);
            }
            if matches!(drained, Drained::Done) {
                schedule.drain_failures = 0;
                set_state(me, WorkerState::Idle);
            } else {
                schedule.drain_failures += 1;
                let wait = backoff(schedule.drain_failures + 1, naptime, max_backoff());
                set_state(me, WorkerState::BackingOff);
                if !nap_until(Instant::now() + wait, false) {
                    break;
                }
                continue;
            }
        }
        if !nap_until(Instant::now() + naptime, true) {
            break;
        }
    }
}
