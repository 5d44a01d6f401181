//! A refresh run, the caller's side: dynamic background workers started for each call refresh
//! the views, one transaction per view, while the calling session waits, relays a NOTICE per view
//! and returns the rows. The staggered refresh starts one worker; the parallel refresh several,
//! which take views as their dependencies complete (worker.rs).
//!
//! Why workers: a function's body runs inside its caller's transaction, so refreshes done there
//! would hold every view's lock until the end and be undone together by any later error or a
//! cancel. A worker commits each view (and its log row) on its own.
//!
//! Why dynamic shared memory for the run's parameters and results rather than a table row: the
//! caller's own writes are not visible to the workers until the caller commits, which is after
//! they have finished. The caller creates a segment holding the parameters, one slot per view and
//! the dependency edges, passes its handle as each worker's argument, and the workers claim and
//! fill the slots. Readers in other sessions see runs through the committed tables
//! (mv_refresh_runs, the log).

use crate::matviews::views::{Plan, ViewInfo};
use crate::{backend, error};
use pgrx::bgworkers::{BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker};
use pgrx::prelude::*;
use runbook_core::matviews::{Outcome, RefreshMode, SlotState};
use std::cell::RefCell;
use std::ffi::c_int;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, Ordering};

/// `backend_type` of the workers in pg_stat_activity.
pub const WORKER_TYPE: &str = "pg_runbook matview refresh";
/// Each worker's application_name is this followed by its run's id (refresh_status() joins on it).
pub const RUN_APPLICATION_NAME: &str = "pg_runbook refresh run ";
/// The most workers one run may have (the bound of pg_runbook.refresh_max_parallel).
pub const MAX_WORKERS: usize = crate::settings::REFRESH_PARALLEL_LIMIT;
/// The first word of every run's segment: a worker handed a stale or foreign handle stops.
const SEGMENT_MAGIC: u32 = 0x6d76_7267;
/// Room for a failed view's error message in its slot (longer messages are cut).
const SLOT_ERROR_BYTES: usize = 480;

/// The options of one run, validated from the refresh functions' arguments (staggered.rs).
#[derive(Debug, Clone, Copy)]
pub struct RefreshOptions {
    /// Pause between two views a worker refreshes.
    pub stagger_ms: i64,
    /// CONCURRENTLY where the view allows it.
    pub concurrently: bool,
    pub lock_timeout_ms: i64,
    pub statement_timeout_ms: i64,
    /// Skip a view whose sources saw no write since its last successful refresh.
    pub only_if_changed: bool,
}

/// What became of one view of a run: written into its slot by the worker that took it, read back
/// by the caller.
#[derive(Debug, Clone)]
pub struct ViewResult {
    /// The worker (1-based, in the order they joined the run) that took the view.
    pub worker: u32,
    pub outcome: Outcome,
    pub concurrent: bool,
    pub duration_ms: f64,
    /// Rows in the view after a successful refresh.
    pub rows: Option<i64>,
    /// The failure's message, or why the view was skipped.
    pub error: Option<String>,
}

impl ViewResult {
    /// As the result rows and mv_refresh_log spell the mode.
    pub fn mode(&self) -> String {
        RefreshMode::of(self.concurrent).as_str().to_string()
    }

    pub fn status(&self) -> String {
        self.outcome.as_str().to_string()
    }
}

/// What a run returns: the result of each view that was reached, with its index in the plan (in
/// refresh order), how many workers it had, and its total time from the call to the last
/// worker's end.
pub struct RunResult {
    pub results: Vec<(usize, ViewResult)>,
    pub workers: usize,
    pub total_ms: f64,
}

// ---- the shared segment -------------------------------------------------------------------------
//
// Layout: a RunHeader, then one Slot per view of the plan (in refresh order), then the dependency
// edges. The caller writes all of it before it starts any worker; afterwards only atomics change,
// except a slot's plain fields, which the one worker that claimed the slot writes before it
// publishes DONE (Release), and which nobody reads before seeing DONE (Acquire).

#[repr(C)]
pub struct RunHeader {
    magic: u32,
    count: u32,
    edge_count: u32,
    /// Workers started; final before `go` is set.
    pub workers: AtomicU32,
    pub database: pg_sys::Oid,
    /// The role the refreshes run as (the caller's current role), and the session's login role
    /// the workers connect as: PostgreSQL 15 refuses a worker connection as a NOLOGIN role
    /// (runbook_operator, or a view owner after SET ROLE), so a worker connects as the login role
    /// and switches to the current one, as SET ROLE does.
    pub user: pg_sys::Oid,
    pub session_user: pg_sys::Oid,
    pub caller_pid: i32,
    pub options: RefreshOptions,
    /// When the caller started the run (PostgreSQL timestamp, microseconds).
    pub started_at: i64,
    /// Set by the caller once every worker is registered; workers wait for it.
    pub go: AtomicU32,
    /// Set by worker 1 once the run's row is written and `run_id` is known.
    pub setup_done: AtomicU32,
    pub run_id: AtomicI64,
    pub joined: AtomicU32,
    /// Workers that left cleanly; the last one writes the run's end and sets `finished`.
    pub left: AtomicU32,
    pub finished: AtomicU32,
    pub total_us: AtomicI64,
    pub pids: [AtomicI32; MAX_WORKERS],
}

const PENDING: u32 = 0;
const CLAIMED: u32 = 1;
const DONE: u32 = 2;

#[repr(C)]
struct Slot {
    matview: pg_sys::Oid,
    /// PENDING, CLAIMED (a worker took it) or DONE (its fields below are written).
    state: AtomicU32,
    /// The view's refresh time as last logged, in microseconds (0: none), written by worker 1
    /// before it sets `setup_done`: the run's priorities (runbook-core `priorities`).
    expected_us: AtomicI64,
    worker: u32,
    concurrent: bool,
    outcome: u8,
    duration_ms: f64,
    /// Rows after the refresh; -1 for none.
    rows: i64,
    error_len: u32,
    error: [u8; SLOT_ERROR_BYTES],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Edge {
    view: u32,
    reads: u32,
}

fn slots_offset() -> usize {
    std::mem::size_of::<RunHeader>()
}

fn edges_offset(count: usize) -> usize {
    slots_offset() + count * std::mem::size_of::<Slot>()
}

fn segment_size(views: usize, edges: usize) -> usize {
    edges_offset(views) + edges * std::mem::size_of::<Edge>()
}

/// The run's segment as one process sees it. Every access to the segment's memory goes through
/// the methods here.
pub struct RunSegment {
    segment: *mut pg_sys::dsm_segment,
    base: *mut u8,
}

impl RunSegment {
    /// Attaches to the segment `handle` (in a worker); `None` when the caller has gone.
    pub fn attach(handle: pg_sys::dsm_handle) -> Option<RunSegment> {
        // SAFETY: dsm_attach returns NULL for a handle whose segment no longer exists; a live
        // segment stays mapped in this process until it detaches or exits, so its address is
        // valid for the life of the returned RunSegment (a worker never detaches: it exits).
        let (segment, base) = unsafe {
            let segment = pg_sys::dsm_attach(handle);
            if segment.is_null() {
                return None;
            }
            (segment, pg_sys::dsm_segment_address(segment) as *mut u8)
        };
        let shared = RunSegment { segment, base };
        (shared.header().magic == SEGMENT_MAGIC).then_some(shared)
    }

    /// The handle the workers attach with (their start argument).
    fn handle(&self) -> pg_sys::dsm_handle {
        // SAFETY: `segment` is the live segment this process created or attached.
        unsafe { pg_sys::dsm_segment_handle(self.segment) }
    }

    /// Unmaps the segment in this process (the caller, when the run is over); the last process to
    /// detach frees it.
    fn detach(self) {
        // SAFETY: `segment` is attached in this process, and `self` is consumed, so no reference
        // into the segment outlives the mapping.
        unsafe { pg_sys::dsm_detach(self.segment) };
    }

    pub fn header(&self) -> &RunHeader {
        // SAFETY: the segment starts with a RunHeader, zeroed then written by the caller before any
        // worker was started (a worker checks the magic number first); after that only its
        // atomics change.
        unsafe { &*(self.base as *const RunHeader) }
    }

    /// How many views the run has.
    pub fn count(&self) -> usize {
        self.header().count as usize
    }

    fn slot(&self, i: usize) -> &Slot {
        assert!(i < self.count());
        // SAFETY: `count` slots follow the header, each initialised by the caller before the
        // workers started; `i` is in range (checked above). The shared reference only reads
        // plain fields after seeing DONE (see `result`), or the atomic state.
        unsafe { &*(self.base.add(slots_offset()) as *const Slot).add(i) }
    }

    /// The materialized view of slot `i`.
    pub fn matview(&self, i: usize) -> pg_sys::Oid {
        self.slot(i).matview
    }

    /// Records view `i`'s expected refresh time (worker 1, before `setup_done`).
    pub fn set_expected(&self, i: usize, ms: Option<f64>) {
        let us = ms.map_or(0, |ms| (ms * 1000.0).round() as i64).max(0);
        self.slot(i).expected_us.store(us, Ordering::Release);
    }

    /// Each view's expected refresh time, once `setup_done` is set; None where none was logged.
    pub fn expected(&self) -> Vec<Option<f64>> {
        (0..self.count())
            .map(|i| match self.slot(i).expected_us.load(Ordering::Acquire) {
                0 => None,
                us => Some(us as f64 / 1000.0),
            })
            .collect()
    }

    /// Takes slot `i` for this worker if it is still pending; false when another worker took it.
    pub fn claim(&self, i: usize) -> bool {
        self.slot(i)
            .state
            .compare_exchange(PENDING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Writes a claimed slot's result and publishes it (only the claiming worker calls this).
    pub fn complete(&self, i: usize, result: &ViewResult) {
        let error = result.error.as_deref().unwrap_or("");
        let mut error_len = error.len().min(SLOT_ERROR_BYTES);
        while !error.is_char_boundary(error_len) {
            error_len -= 1;
        }
        let slot = self.slot(i) as *const Slot as *mut Slot;
        // SAFETY: this worker claimed slot `i` (CAS PENDING -> CLAIMED), so no other process
        // writes it, and no process reads these plain fields before the DONE stored below with
        // Release ordering; `state` itself is not touched through this pointer.
        unsafe {
            (*slot).worker = result.worker;
            (*slot).concurrent = result.concurrent;
            (*slot).outcome = outcome_code(result.outcome);
            (*slot).duration_ms = result.duration_ms;
            (*slot).rows = result.rows.unwrap_or(-1);
            (&mut (*slot).error)[..error_len].copy_from_slice(&error.as_bytes()[..error_len]);
            (*slot).error_len = error_len as u32;
        }
        self.slot(i).state.store(DONE, Ordering::Release);
    }

    /// Slot `i`'s result once it is done.
    pub fn result(&self, i: usize) -> Option<ViewResult> {
        let slot = self.slot(i);
        if slot.state.load(Ordering::Acquire) != DONE {
            return None;
        }
        let error_len = (slot.error_len as usize).min(SLOT_ERROR_BYTES);
        Some(ViewResult {
            worker: slot.worker,
            outcome: outcome_of(slot.outcome),
            concurrent: slot.concurrent,
            duration_ms: slot.duration_ms,
            rows: (slot.rows >= 0).then_some(slot.rows),
            error: (error_len > 0)
                .then(|| String::from_utf8_lossy(&slot.error[..error_len]).into_owned()),
        })
    }

    /// The outcome of slot `i`, which is done.
    pub fn outcome(&self, i: usize) -> Outcome {
        outcome_of(self.slot(i).outcome)
    }

    pub fn edges(&self) -> Vec<(usize, usize)> {
        let n = self.header().edge_count as usize;
        // SAFETY: `edge_count` edges follow the slots, written by the caller before the workers
        // started and never changed.
        let edges = unsafe {
            std::slice::from_raw_parts(self.base.add(edges_offset(self.count())) as *const Edge, n)
        };
        edges
            .iter()
            .map(|e| (e.view as usize, e.reads as usize))
            .collect()
    }

    pub fn states(&self) -> Vec<SlotState> {
        (0..self.count())
            .map(|i| match self.slot(i).state.load(Ordering::Acquire) {
                PENDING => SlotState::Pending,
                CLAIMED => SlotState::Claimed,
                _ => SlotState::Done,
            })
            .collect()
    }

    /// Sets the latches of the caller and every worker but this process, so waiters re-check.
    pub fn wake_all(&self) {
        let h = self.header();
        let me = my_pid();
        wake(h.caller_pid);
        for pid in &h.pids {
            let pid = pid.load(Ordering::Acquire);
            if pid != 0 && pid != me {
                wake(pid);
            }
        }
    }
}

fn outcome_code(o: Outcome) -> u8 {
    match o {
        Outcome::Success => 0,
        Outcome::Failed => 1,
        Outcome::Skipped => 2,
        Outcome::Unchanged => 3,
    }
}

fn outcome_of(code: u8) -> Outcome {
    match code {
        0 => Outcome::Success,
        1 => Outcome::Failed,
        2 => Outcome::Skipped,
        _ => Outcome::Unchanged,
    }
}

/// This process's pid (PostgreSQL's MyProcPid is getpid() of the backend).
pub fn my_pid() -> i32 {
    std::process::id() as i32
}

/// The PGPROC of the backend or worker with this pid, if it is alive.
fn backend_proc(pid: i32) -> Option<*mut pg_sys::PGPROC> {
    // SAFETY: BackendPidGetProc takes ProcArrayLock itself and returns NULL for a pid that is not
    // a live backend.
    let proc_ = unsafe { pg_sys::BackendPidGetProc(pid) };
    (!proc_.is_null()).then_some(proc_)
}

/// Whether the backend with this pid (the run's caller) is still alive.
pub fn backend_alive(pid: i32) -> bool {
    backend_proc(pid).is_some()
}

fn wake(pid: i32) {
    if let Some(proc_) = backend_proc(pid) {
        // SAFETY: a PGPROC lives in shared memory for the life of the server, so its latch may
        // be set even if the process has just exited (SetLatch on an unowned latch is a no-op).
        unsafe { pg_sys::SetLatch(&raw mut (*proc_).procLatch) };
    }
}

/// Waits on this process's latch for at most `ms`, then handles interrupts (a cancel raises here).
pub fn wait_latch(ms: i64) {
    // SAFETY: MyLatch is this process's own latch, set up at process start; WL_EXIT_ON_PM_DEATH
    // ends the process with the server.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as c_int,
            ms.max(1) as _,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
        pg_sys::check_for_interrupts!();
    }
}

// ---- the caller ---------------------------------------------------------------------------------

fn create_segment(plan: &Plan, options: RefreshOptions) -> RunSegment {
    let n = plan.views.len();
    let size = segment_size(n, plan.edges.len());
    // SAFETY: dsm_create (flags 0) raises an ERROR rather than return NULL, and its segment is
    // this process's alone until a worker is started with its handle, after this block. `base`
    // points to `size` writable bytes; zero bytes are a valid state for every atomic; the header,
    // `n` slots and the edges fit in `size` (segment_size), and each pointer is aligned for its
    // type: the segment starts on a MAXALIGN boundary, and the slots and edges start at multiples
    // of size_of::<RunHeader>() and size_of::<Slot>(), which are multiples of their 8-byte
    // alignment. GetUserId and GetSessionUserId read this backend's state.
    let (segment, base) = unsafe {
        let segment = pg_sys::dsm_create(size, 0);
        let base = pg_sys::dsm_segment_address(segment) as *mut u8;
        std::ptr::write_bytes(base, 0, size);
        let header = base as *mut RunHeader;
        (*header).magic = SEGMENT_MAGIC;
        (*header).count = n as u32;
        (*header).edge_count = plan.edges.len() as u32;
        (*header).database = backend::database();
        (*header).user = pg_sys::GetUserId();
        (*header).session_user = pg_sys::GetSessionUserId();
        (*header).caller_pid = my_pid();
        (*header).options = options;
        (*header).started_at = backend::now_micros();
        let slots = base.add(slots_offset()) as *mut Slot;
        for (i, v) in plan.views.iter().enumerate() {
            (*slots.add(i)).matview = v.oid;
        }
        let edges = base.add(edges_offset(n)) as *mut Edge;
        for (k, &(view, reads)) in plan.edges.iter().enumerate() {
            *edges.add(k) = Edge {
                view: view as u32,
                reads: reads as u32,
            };
        }
        (segment, base)
    };
    RunSegment { segment, base }
}

fn start_worker(handle: pg_sys::dsm_handle) -> Option<DynamicBackgroundWorker> {
    BackgroundWorkerBuilder::new("pg_runbook matview refresh")
        .set_type(WORKER_TYPE)
        .set_library("pg_runbook")
        .set_function("pg_runbook_matview_refresh_main")
        .enable_spi_access()
        .set_argument(Some(pg_sys::Datum::from(handle)))
        .set_notify_pid(my_pid())
        .load_dynamic()
        .ok()
}

/// Runs the refresh of `plan` on up to `workers` background workers, relays a NOTICE per view as
/// it completes, and waits for them. The one path of the staggered refresh (one worker) and the
/// parallel one.
pub fn run(plan: &Plan, options: RefreshOptions, workers: usize) -> RunResult {
    let n = plan.views.len();
    if n == 0 {
        return RunResult {
            results: Vec::new(),
            workers: 0,
            total_ms: 0.0,
        };
    }
    let shared = create_segment(plan, options);
    let h = shared.header();
    let handle = shared.handle();
    let mut started = Vec::new();
    for _ in 0..workers.clamp(1, MAX_WORKERS) {
        match start_worker(handle) {
            Some(w) => started.push(w),
            None => break,
        }
    }
    if started.is_empty() {
        shared.detach();
        error::not_ready(
            "could not start the materialized view refresh worker",
            "no background worker slot is free: raise max_worker_processes or retry",
        );
    }
    let launched = started.len();
    h.workers.store(launched as u32, Ordering::Release);
    h.go.store(1, Ordering::Release);
    shared.wake_all();

    let handles = RefCell::new(started);
    let handles_for_cancel = AssertUnwindSafe(&handles);
    let reported = RefCell::new(vec![false; n]);
    let report = || {
        let mut reported = reported.borrow_mut();
        let mut k = reported.iter().filter(|r| **r).count();
        for i in 0..n {
            if reported[i] {
                continue;
            }
            if let Some(result) = shared.result(i) {
                k += 1;
                reported[i] = true;
                pgrx::notice!("{}", notice_text(k, n, &plan.views[i], &result, launched));
            }
        }
    };
    let stopped_early = PgTryBuilder::new(AssertUnwindSafe(|| {
        loop {
            report();
            if h.finished.load(Ordering::Acquire) == 1 {
                return false;
            }
            let stopped = handles
                .borrow()
                .iter()
                .filter(|w| {
                    matches!(
                        w.pid(),
                        Err(BackgroundWorkerStatus::Stopped
                            | BackgroundWorkerStatus::PostmasterDied)
                    )
                })
                .count();
            // A worker counts itself in `left` before it exits, so more stopped workers than
            // left ones means one died (a FATAL, a crash): the views it held would never be done
            // and the others could wait for them, so the run ends here.
            if stopped > h.left.load(Ordering::Acquire) as usize || stopped == launched {
                return h.finished.load(Ordering::Acquire) != 1;
            }
            wait_latch(200);
        }
    }))
    .catch_others(|e| {
        let handles = &handles_for_cancel;
        // The caller was cancelled (or failed): stop every worker of the run. Views already
        // refreshed stay refreshed and logged; the ones in progress are rolled back by their
        // worker's exit.
        for w in handles.0.borrow_mut().drain(..) {
            w.terminate();
        }
        e.rethrow()
    })
    .execute();
    if stopped_early {
        for w in handles.borrow_mut().drain(..) {
            w.terminate();
        }
    }
    report();
    let results: Vec<(usize, ViewResult)> = (0..n)
        .filter_map(|i| {
            shared.result(i).map(|mut r| {
                r.duration_ms = (r.duration_ms * 1000.0).round() / 1000.0;
                (i, r)
            })
        })
        .collect();
    if stopped_early {
        pgrx::warning!(
            "the materialized view refresh workers stopped after {} of {n} views; see the server log",
            results.len()
        );
    }
    let total_ms = if h.finished.load(Ordering::Acquire) == 1 {
        h.total_us.load(Ordering::Acquire) as f64 / 1000.0
    } else {
        (backend::now_micros() - h.started_at) as f64 / 1000.0
    };
    shared.detach();
    RunResult {
        results,
        workers: launched,
        total_ms: (total_ms * 1000.0).round() / 1000.0,
    }
}

fn notice_text(k: usize, n: usize, view: &ViewInfo, result: &ViewResult, workers: usize) -> String {
    let reason = result.error.as_deref().unwrap_or_default();
    let what = match result.outcome {
        Outcome::Success => format!(
            "{}, {:.0} ms",
            if result.concurrent {
                "concurrently"
            } else {
                "plain"
            },
            result.duration_ms
        ),
        Outcome::Failed => format!("failed after {:.0} ms: {reason}", result.duration_ms),
        Outcome::Skipped => format!("skipped: {reason}"),
        Outcome::Unchanged => "unchanged since its last refresh, skipped".to_string(),
    };
    let by = if workers > 1 {
        format!(" (worker {})", result.worker)
    } else {
        String::new()
    };
    format!("[{k}/{n}] {}: {what}{by}", view.display())
}
