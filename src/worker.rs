//! The background worker: one per database in `pg_runbook.database`, registered in `_PG_init`
//! when the library is preloaded. It owns no logic: each round it drains the cache invalidation
//! queue through `cache::drain_batch` (one batch per transaction) and, on their intervals, calls
//! `rollup_metrics()`, `clean_expired_cache()` and `prune_mv_refresh_log()` when they exist.
//!
//! Shared memory holds each worker's state (shown by `worker_status()`) and its PGPROC number, so
//! an enqueue can set its latch at commit, and per-database cache counters for `cache_stats()`.

use crate::catalog::{self, col};
use crate::{cache, settings};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::lwlock::PgLwLock;
use pgrx::pg_shmem_init;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const WORKERS: usize = 8;
const DATABASES: usize = 16;
const NAME_LEN: usize = 64;
const ERROR_LEN: usize = 512;
const SIGTERM: i32 = 15;

unsafe extern "C-unwind" {
    /// PostgreSQL's SIGTERM handler for backends (postgres.c).
    fn die(signal: std::ffi::c_int);
}
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Copy, Clone, PartialEq)]
#[repr(u8)]
enum State {
    Starting,
    Idle,
    Draining,
    Jobs,
    WaitingForExtension,
    Standby,
    Disabled,
    BackingOff,
    Unassigned,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Idle => "idle",
            State::Draining => "draining",
            State::Jobs => "running periodic jobs",
            State::WaitingForExtension => "waiting for CREATE EXTENSION",
            State::Standby => "standby (idle until promotion)",
            State::Disabled => "disabled",
            State::BackingOff => "backing off after an error",
            State::Unassigned => "no database assigned",
        }
    }
}

#[derive(Copy, Clone)]
struct WorkerSlot {
    in_use: bool,
    database: pg_sys::Oid,
    name: [u8; NAME_LEN],
    name_len: usize,
    pid: i32,
    procno: i32,
    state: State,
    last_drain_at: i64,
    drained: u64,
    error: [u8; ERROR_LEN],
    error_len: usize,
    last_error_at: i64,
    naptime_ms: i32,
    connect_attempts: u32,
}

#[derive(Copy, Clone, Default)]
pub struct Counters {
    database: pg_sys::Oid,
    pub hits: u64,
    pub misses: u64,
    pub drained: u64,
}

#[derive(Copy, Clone)]
pub struct SharedWorkers {
    workers: [WorkerSlot; WORKERS],
    counters: [Counters; DATABASES],
}

impl Default for SharedWorkers {
    fn default() -> Self {
        let slot = WorkerSlot {
            in_use: false,
            database: pg_sys::InvalidOid,
            name: [0; NAME_LEN],
            name_len: 0,
            pid: 0,
            procno: -1,
            state: State::Starting,
            last_drain_at: 0,
            drained: 0,
            error: [0; ERROR_LEN],
            error_len: 0,
            last_error_at: 0,
            naptime_ms: 0,
            connect_attempts: 0,
        };
        SharedWorkers {
            workers: [slot; WORKERS],
            counters: [Counters::default(); DATABASES],
        }
    }
}

// SAFETY: plain fixed-size data with no pointers.
unsafe impl PGRXSharedMemory for SharedWorkers {}

static SHARED: PgLwLock<SharedWorkers> = unsafe { PgLwLock::new(c"pg_runbook_workers") };
static SHARED_READY: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Without shared_preload_libraries: this backend's own counters.
    static LOCAL: Cell<Counters> = Cell::new(Counters::default());
}

fn copy_into(buf: &mut [u8], text: &str) -> usize {
    let mut n = text.len().min(buf.len());
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    buf[..n].copy_from_slice(&text.as_bytes()[..n]);
    n
}

fn now_micros() -> i64 {
    unsafe { pg_sys::GetCurrentTimestamp() }
}

fn timestamp(micros: i64) -> Option<TimestampWithTimeZone> {
    if micros == 0 {
        return None;
    }
    unsafe { TimestampWithTimeZone::from_datum(micros.into(), false) }
}

/// The databases in pg_runbook.database, in order.
fn database_list() -> Vec<String> {
    settings::text(&settings::DATABASE)
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Requests shared memory and registers one worker per listed database; preloading only.
pub fn init_preloaded() {
    pg_shmem_init!(SHARED);
    SHARED_READY.store(true, Ordering::Relaxed);
    let count = database_list().len().clamp(1, WORKERS);
    for i in 0..count {
        BackgroundWorkerBuilder::new(&format!("pg_runbook worker {i}"))
            .set_type("pg_runbook worker")
            .set_library("pg_runbook")
            .set_function("pg_runbook_worker_main")
            .set_argument((i as i32).into_datum())
            .enable_spi_access()
            .set_restart_time(Some(Duration::from_secs(1)))
            .load();
    }
}

// ---- counters and wake-ups, used by the cache functions -----------------------------------

fn with_counters(f: impl FnOnce(&mut Counters)) {
    let db = unsafe { pg_sys::MyDatabaseId };
    if !SHARED_READY.load(Ordering::Relaxed) {
        LOCAL.with(|c| {
            let mut v = c.get();
            f(&mut v);
            c.set(v);
        });
        return;
    }
    let mut guard = SHARED.exclusive();
    let index = guard
        .counters
        .iter()
        .position(|c| c.database == db)
        .or_else(|| {
            guard
                .counters
                .iter()
                .position(|c| c.database == pg_sys::InvalidOid)
        })
        .unwrap_or(DATABASES - 1);
    let slot = &mut guard.counters[index];
    if slot.database != db {
        *slot = Counters {
            database: db,
            ..Counters::default()
        };
    }
    f(slot);
}

pub fn note_cache_hit() {
    with_counters(|c| c.hits += 1);
}

pub fn note_cache_miss() {
    with_counters(|c| c.misses += 1);
}

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

/// When a worker serving this database last drained events.
pub fn last_worker_drain_at() -> Option<TimestampWithTimeZone> {
    if !SHARED_READY.load(Ordering::Relaxed) {
        return None;
    }
    let db = unsafe { pg_sys::MyDatabaseId };
    let guard = SHARED.share();
    let at = guard
        .workers
        .iter()
        .filter(|w| w.in_use && w.database == db)
        .map(|w| w.last_drain_at)
        .max();
    at.and_then(timestamp)
}

/// Sets the latch of every worker serving `database`.
pub fn wake(database: pg_sys::Oid) {
    if !SHARED_READY.load(Ordering::Relaxed) {
        return;
    }
    let procnos: Vec<i32> = {
        let guard = SHARED.share();
        guard
            .workers
            .iter()
            .filter(|w| w.in_use && w.database == database && w.procno >= 0)
            .map(|w| w.procno)
            .collect()
    };
    for procno in procnos {
        unsafe {
            let proc_ = (*pg_sys::ProcGlobal).allProcs.add(procno as usize);
            pg_sys::SetLatch(&mut (*proc_).procLatch);
        }
    }
}

// ---- the worker ---------------------------------------------------------------------------

fn update_slot(index: usize, f: impl FnOnce(&mut WorkerSlot)) {
    let mut guard = SHARED.exclusive();
    f(&mut guard.workers[index]);
}

fn set_state(index: usize, state: State) {
    update_slot(index, |s| s.state = state);
}

fn record_error(index: usize, what: &str, message: &str) {
    let text = format!("{what}: {message}");
    pgrx::warning!("pg_runbook worker: {text}");
    let at = now_micros();
    update_slot(index, |s| {
        s.error_len = copy_into(&mut s.error, &text);
        s.last_error_at = at;
    });
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
    .catch_others(|e| Err(catalog::caught_message(&e)))
    .catch_rust_panic(|e| Err(catalog::caught_message(&e)))
    .execute();
    if outcome.is_err() {
        unsafe { pg_sys::AbortCurrentTransaction() };
    }
    outcome
}

fn shutdown_requested() -> bool {
    unsafe { pg_sys::ShutdownRequestPending != 0 }
}

/// Waits on the latch; false when the worker should leave.
fn nap(duration: Duration) -> bool {
    BackgroundWorker::wait_latch(Some(duration.max(Duration::from_millis(1))))
        && !shutdown_requested()
}

/// Reloads the configuration; false when this worker's database changed (the worker then exits
/// so that the postmaster restarts it against the new one).
fn reload(index: usize, database: &str) -> bool {
    unsafe {
        pg_sys::ConfigReloadPending = 0;
        pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
    }
    let naptime = settings::NAPTIME_MS.get();
    update_slot(index, |s| s.naptime_ms = naptime);
    log!(
        "pg_runbook worker: configuration reloaded: naptime {} ms, drain_batch_size {}, enabled {}",
        naptime,
        settings::DRAIN_BATCH_SIZE.get(),
        settings::WORKER_ENABLED.get()
    );
    database_list().get(index).map(String::as_str) == Some(database)
}

/// Connects to the index-th database. A database that does not exist makes the connection
/// FATAL; the attempt count in shared memory then spaces later attempts out (up to a minute).
fn connect(index: usize) -> Option<String> {
    loop {
        if BackgroundWorker::sighup_received() {
            unsafe {
                pg_sys::ConfigReloadPending = 0;
                pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
            }
        }
        if let Some(name) = database_list().get(index).cloned() {
            let attempts = {
                let mut guard = SHARED.exclusive();
                let slot = &mut guard.workers[index];
                if slot.name_len != name.len() || slot.name[..slot.name_len] != *name.as_bytes() {
                    slot.connect_attempts = 0;
                }
                slot.in_use = true;
                slot.pid = unsafe { pg_sys::MyProcPid };
                slot.name_len = copy_into(&mut slot.name, &name);
                slot.state = State::Starting;
                slot.connect_attempts += 1;
                slot.connect_attempts
            };
            if attempts > 1 {
                let wait = Duration::from_secs(1u64 << (attempts - 1).min(6)).min(MAX_BACKOFF);
                log!(
                    "pg_runbook worker: database \"{name}\" could not be connected to last time; retrying in {} s",
                    wait.as_secs()
                );
                if !nap(wait) {
                    return None;
                }
                if database_list().get(index) != Some(&name) {
                    continue;
                }
            }
            BackgroundWorker::connect_worker_to_spi(Some(&name), None);
            update_slot(index, |s| {
                s.connect_attempts = 0;
                s.database = unsafe { pg_sys::MyDatabaseId };
                s.procno = unsafe { (*pg_sys::MyProc).pgprocno };
                s.naptime_ms = settings::NAPTIME_MS.get();
            });
            return Some(name);
        }
        update_slot(index, |s| {
            s.in_use = true;
            s.pid = unsafe { pg_sys::MyProcPid };
            s.name_len = 0;
            s.state = State::Unassigned;
        });
        if !nap(Duration::from_secs(60)) {
            return None;
        }
    }
}

/// Calls `schema.signature` when that function exists. Returns whether it ran.
fn call_if_exists(signature: &str) -> bool {
    let Some(schema) = catalog::ext_schema_if_installed() else {
        return false;
    };
    let function = format!("{schema}.{signature}");
    let exists = catalog::select_one(
        "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL",
        &[function.as_str().into()],
        |r| col::<bool>(r, 1).unwrap_or(false),
    );
    if exists {
        catalog::with_lock_timeout(|| catalog::execute(&format!("SELECT {function}"), &[]));
    }
    exists
}

struct Round {
    floor: i64,
    last_rollup: Instant,
    last_maintenance: Instant,
    backoff: Duration,
}

/// Drains batch after batch, each in its own transaction, until one comes back short. Returns
/// false after an error (already recorded).
fn drain_round(index: usize, round: &mut Round) -> bool {
    let batch_size = settings::DRAIN_BATCH_SIZE.get();
    loop {
        set_state(index, State::Draining);
        let floor = round.floor;
        let outcome = unit(move || {
            catalog::ext_schema_if_installed().map(|schema| {
                catalog::with_lock_timeout(|| cache::drain_batch(&schema, floor, batch_size))
            })
        });
        match outcome {
            Err(e) => {
                round.floor = 0;
                record_error(index, "draining the cache invalidation queue", &e);
                return false;
            }
            Ok(None) => {
                set_state(index, State::WaitingForExtension);
                return true;
            }
            Ok(Some(batch)) => {
                if batch.rejected > 0 {
                    let why = format!(
                        "moved {} malformed event(s) to cache_invalidation_rejected",
                        batch.rejected
                    );
                    record_error(index, "draining the cache invalidation queue", &why);
                }
                if batch.events > 0 {
                    let at = now_micros();
                    update_slot(index, |s| {
                        s.drained += batch.events as u64;
                        s.last_drain_at = at;
                    });
                }
                if batch.events < batch_size as i64 {
                    if round.floor == 0 {
                        set_state(index, State::Idle);
                        return true;
                    }
                    round.floor = 0;
                } else {
                    round.floor = batch.max_id;
                }
            }
        }
        if shutdown_requested() {
            return true;
        }
    }
}

/// Runs the periodic jobs that are due; false after an error.
fn periodic_jobs(index: usize, round: &mut Round) -> bool {
    let mut ok = true;
    let mut job = |signature: &str| {
        set_state(index, State::Jobs);
        if let Err(e) = unit(|| call_if_exists(signature)) {
            record_error(index, &format!("running {signature}"), &e);
            ok = false;
        }
    };
    if round.last_rollup.elapsed()
        >= Duration::from_millis(settings::ROLLUP_INTERVAL_MS.get() as u64)
    {
        round.last_rollup = Instant::now();
        job("rollup_metrics()");
        job("notify_alert_changes()");
    }
    if round.last_maintenance.elapsed()
        >= Duration::from_millis(settings::MAINTENANCE_INTERVAL_MS.get() as u64)
    {
        round.last_maintenance = Instant::now();
        job("clean_expired_cache()");
        job("prune_mv_refresh_log()");
    }
    set_state(index, State::Idle);
    ok
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_runbook_worker_main(arg: pg_sys::Datum) {
    let index = unsafe { i32::from_datum(arg, false) }
        .unwrap_or(0)
        .clamp(0, WORKERS as i32 - 1) as usize;
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // PostgreSQL's own handler: SIGTERM interrupts even a running statement (pgrx's waits for it).
    unsafe { pg_sys::pqsignal(SIGTERM, Some(die)) };

    let Some(database) = connect(index) else {
        return;
    };
    log!("pg_runbook worker {index} started for database \"{database}\"");
    let mut round = Round {
        floor: 0,
        last_rollup: Instant::now(),
        last_maintenance: Instant::now(),
        backoff: Duration::ZERO,
    };
    loop {
        if shutdown_requested() {
            break;
        }
        if BackgroundWorker::sighup_received() && !reload(index, &database) {
            log!(
                "pg_runbook worker {index}: pg_runbook.database changed; restarting to serve the new database"
            );
            unsafe { pg_sys::proc_exit(1) };
        }
        let naptime = Duration::from_millis(settings::NAPTIME_MS.get() as u64);
        if !settings::WORKER_ENABLED.get() {
            set_state(index, State::Disabled);
        } else if unsafe { pg_sys::RecoveryInProgress() } {
            set_state(index, State::Standby);
        } else {
            let drained = drain_round(index, &mut round);
            let jobs = shutdown_requested() || periodic_jobs(index, &mut round);
            if drained && jobs {
                round.backoff = Duration::ZERO;
            } else {
                round.backoff = (round.backoff * 2).max(naptime).min(MAX_BACKOFF);
                set_state(index, State::BackingOff);
                if !nap(round.backoff) {
                    break;
                }
                continue;
            }
        }
        if !nap(naptime) {
            break;
        }
    }
    update_slot(index, |s| {
        s.procno = -1;
        s.pid = 0;
    });
}

/// The workers of this cluster and what each is doing.
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
    if !SHARED_READY.load(Ordering::Relaxed) {
        pgrx::notice!("pg_runbook is not in shared_preload_libraries: no worker runs");
        return TableIterator::new(Vec::new());
    }
    let slots: Vec<WorkerSlot> = SHARED
        .share()
        .workers
        .iter()
        .filter(|w| w.in_use)
        .copied()
        .collect();
    let rows: Vec<_> = slots
        .into_iter()
        .map(|w| {
            (
                (w.pid != 0).then_some(w.pid),
                String::from_utf8_lossy(&w.name[..w.name_len]).into_owned(),
                w.state.name().to_string(),
                timestamp(w.last_drain_at),
                w.drained as i64,
                (w.error_len > 0)
                    .then(|| String::from_utf8_lossy(&w.error[..w.error_len]).into_owned()),
                timestamp(w.last_error_at),
                w.naptime_ms,
            )
        })
        .collect();
    TableIterator::new(rows)
}

pgrx::extension_sql!(
    "COMMENT ON FUNCTION @extschema@.worker_status() IS \
     'pg_runbook background workers: pid, database, state, last drain, events drained, last error, naptime';",
    name = "worker_status_comment",
    requires = [worker_status]
);
