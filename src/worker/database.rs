//! The per-database worker, started by the launcher with the database's oid. Each round it
//! drains the invalidation queue batch by batch (`cache::drain_step`, one transaction each) and,
//! on their intervals, calls `rollup_metrics()`, `clean_expired_cache()` and
//! `prune_mv_refresh_log()` when they exist. Without the extension it says so and exits; the
//! launcher looks again later.

use super::shared::{self, State};
use crate::backend::{self, shutdown_requested};
use crate::own_sql::{self, col};
use crate::{cache, settings};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use runbook_core::drain::{Cursor, backoff, next};
use std::ffi::CString;
use std::time::{Duration, Instant};

/// Where this worker's slot is and which database it serves.
#[derive(Copy, Clone)]
struct Me {
    index: usize,
}

fn set_state(me: Me, state: State) {
    shared::update(me.index, |s| s.state = state);
    report_activity(state);
}

/// Shows the current step in pg_stat_activity (state and query columns).
fn report_activity(state: State) {
    let (backend_state, text) = match state {
        State::Idle | State::WaitingForExtension | State::Disabled | State::Standby => {
            (pg_sys::BackendState::STATE_IDLE, state.name())
        }
        State::Draining => (
            pg_sys::BackendState::STATE_RUNNING,
            "draining the cache invalidation queue",
        ),
        State::RollingUp => (
            pg_sys::BackendState::STATE_RUNNING,
            "rollup_metrics(), notify_alert_changes()",
        ),
        State::Maintenance => (
            pg_sys::BackendState::STATE_RUNNING,
            "clean_expired_cache(), prune_mv_refresh_log()",
        ),
        _ => (pg_sys::BackendState::STATE_IDLE, state.name()),
    };
    let text = CString::new(text).unwrap_or_default();
    // SAFETY: pgstat_report_activity copies the text into this backend's status entry.
    unsafe { pg_sys::pgstat_report_activity(backend_state, text.as_ptr()) };
}

fn record_error(me: Me, what: &str, message: &str) {
    let text = format!("{what}: {message}");
    pgrx::warning!("pg_runbook worker: {text}");
    let at = shared::now_micros();
    shared::update(me.index, |s| s.set_error(&text, at));
}

/// Runs one unit of work in its own transaction. An ERROR inside is caught, the transaction
/// aborted, and the message returned, so the loop carries on.
fn unit<R>(f: impl FnOnce() -> R) -> Result<R, String> {
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

/// Waits until `deadline`, looping: a wake-up from an enqueue or a signal must not cut a backoff
/// short. With `stop_on_latch` a set latch (an enqueue's wake, SIGHUP) ends the wait at once.
/// False when the worker should leave.
pub fn nap_until(deadline: Instant, stop_on_latch: bool) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return !shutdown_requested();
        }
        if !BackgroundWorker::wait_latch(Some(left)) || shutdown_requested() {
            return false;
        }
        if stop_on_latch {
            return true;
        }
    }
}

fn reload(me: Me) {
    // SAFETY: the documented way to apply a reload in a worker (pgrx 0.18 no longer does it).
    unsafe {
        pg_sys::ConfigReloadPending = 0;
        pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
    }
    let naptime = settings::NAPTIME_MS.get();
    shared::update(me.index, |s| s.naptime_ms = naptime);
    log!(
        "pg_runbook worker: configuration reloaded: naptime {} ms, drain_batch_size {}, enabled {}",
        naptime,
        settings::DRAIN_BATCH_SIZE.get(),
        settings::WORKER_ENABLED.get()
    );
}

/// Calls `schema.signature` when that function exists. Returns whether it ran.
fn call_if_exists(signature: &str) -> bool {
    let Some(schema) = own_sql::ext_schema_if_installed() else {
        return false;
    };
    let function = format!("{schema}.{signature}");
    let exists = own_sql::select_one(
        "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL",
        &[function.as_str().into()],
        |r| col::<bool>(r, 1).unwrap_or(false),
    );
    if exists {
        own_sql::with_lock_timeout(|| own_sql::execute(&format!("SELECT {function}"), &[]));
    }
    exists
}

struct Round {
    last_rollup: Instant,
    last_maintenance: Instant,
    /// Consecutive failed drains, and failed job rounds: each backs off on its own, so a job
    /// that cannot get its lock does not hold up the drain.
    failures: u32,
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

/// Drains batch after batch, each in its own transaction, until the queue has nothing left
/// this round (see `runbook_core::drain::next`).
fn drain_round(me: Me) -> Drained {
    let batch_size = settings::DRAIN_BATCH_SIZE.get();
    let mut cursor = Some(Cursor::START);
    while let Some(at) = cursor {
        set_state(me, State::Draining);
        let outcome = unit(move || {
            own_sql::ext_schema_if_installed()
                .map(|schema| cache::drain_step(&schema, at.floor, batch_size))
        });
        match outcome {
            Err(e) => {
                record_error(me, "draining the cache invalidation queue", &e);
                return Drained::Failed;
            }
            Ok(None) => return Drained::NoExtension,
            Ok(Some(batch)) => {
                if batch.rejected > 0 {
                    let why = format!(
                        "moved {} malformed event(s) to cache_invalidation_rejected",
                        batch.rejected
                    );
                    record_error(me, "draining the cache invalidation queue", &why);
                }
                if batch.events_done > 0 {
                    let at = shared::now_micros();
                    shared::update(me.index, |s| {
                        s.worker_drained += batch.events_done as u64;
                        s.last_drain_at = at;
                    });
                }
                cursor = next(at, batch_size as i64, &batch);
            }
        }
        if shutdown_requested() {
            break;
        }
    }
    Drained::Done
}

/// Runs the periodic jobs that are due; after a failure they wait out a growing backoff.
fn periodic_jobs(me: Me, round: &mut Round, naptime: Duration) {
    if Instant::now() < round.jobs_not_before {
        return;
    }
    let mut ok = true;
    let mut job = |state: State, signature: &str| {
        set_state(me, state);
        if let Err(e) = unit(|| call_if_exists(signature)) {
            record_error(me, &format!("running {signature}"), &e);
            ok = false;
        }
    };
    let due = |last: Instant, ms: i32| last.elapsed() >= Duration::from_millis(ms as u64);
    if due(round.last_rollup, settings::ROLLUP_INTERVAL_MS.get()) {
        round.last_rollup = Instant::now();
        job(State::RollingUp, "rollup_metrics()");
        job(State::RollingUp, "notify_alert_changes()");
    }
    if due(
        round.last_maintenance,
        settings::MAINTENANCE_INTERVAL_MS.get(),
    ) {
        round.last_maintenance = Instant::now();
        job(State::Maintenance, "clean_expired_cache()");
        job(State::Maintenance, "prune_mv_refresh_log()");
    }
    if ok {
        round.job_failures = 0;
    } else {
        round.job_failures += 1;
        round.jobs_not_before =
            Instant::now() + backoff(round.job_failures + 1, naptime, max_backoff());
    }
}

/// Clears the slot's pid when the worker exits (ERROR, FATAL after SIGTERM, or return), so
/// worker_status() never shows a dead process as working.
#[pg_guard]
unsafe extern "C-unwind" fn on_exit(_code: std::ffi::c_int, arg: pg_sys::Datum) {
    let index = arg.value();
    shared::update(index, |s| {
        s.pid = 0;
        s.procno = -1;
        if s.state != State::WaitingForExtension {
            s.state = State::Stopped;
        }
    });
}

/// Takes this database's slot and publishes the pid; None when shared memory has no room.
fn take_slot(database: pg_sys::Oid) -> Option<Me> {
    let pid = unsafe { pg_sys::MyProcPid };
    let mut index = None;
    shared::write(|slots| {
        index = slots.iter().position(|s| s.database == database);
        if let Some(i) = index {
            slots[i].pid = pid;
            slots[i].state = State::Starting;
            slots[i].naptime_ms = settings::NAPTIME_MS.get();
        }
    });
    let index = index?;
    // SAFETY: registers a plain function with the slot index as its argument.
    unsafe { pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(index)) };
    Some(Me { index })
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_runbook_worker_main(arg: pg_sys::Datum) {
    let database = unsafe { pg_sys::Oid::from_datum(arg, false) }.unwrap_or(pg_sys::InvalidOid);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    backend::die_on_sigterm();
    let Some(me) = take_slot(database) else {
        return;
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    // SAFETY: sets this session's search_path once, before any query: nothing the worker runs
    // resolves through a path an ordinary role could plant objects in.
    unsafe {
        pg_sys::SetConfigOption(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
        let procno = (*pg_sys::MyProc).pgprocno;
        shared::update(me.index, |s| s.procno = procno);
    }
    let name = shared::snapshot()[me.index].name();
    log!("pg_runbook worker started for database \"{name}\"");
    let mut round = Round {
        last_rollup: Instant::now(),
        last_maintenance: Instant::now(),
        failures: 0,
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
            set_state(me, State::Disabled);
        } else if unsafe { pg_sys::RecoveryInProgress() } {
            set_state(me, State::Standby);
        } else {
            let drained = drain_round(me);
            if matches!(drained, Drained::NoExtension) {
                set_state(me, State::WaitingForExtension);
                log!(
                    "pg_runbook worker: extension pg_runbook is not created in database \"{name}\"; the launcher will look again"
                );
                return;
            }
            if !shutdown_requested() {
                periodic_jobs(me, &mut round, naptime);
            }
            if matches!(drained, Drained::Done) {
                round.failures = 0;
                set_state(me, State::Idle);
            } else {
                round.failures += 1;
                let wait = backoff(round.failures + 1, naptime, max_backoff());
                set_state(me, State::BackingOff);
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
