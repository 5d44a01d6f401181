//! A refresh run, the caller's side: dynamic background workers started for each call refresh
//! the views, one transaction per view, while the calling session waits, relays a NOTICE per view
//! and returns the rows. The staggered refresh starts one worker; the parallel refresh several,
//! which take views as their dependencies complete (matview_worker.rs).
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

use crate::error;
use crate::matviews::ViewInfo;
use pgrx::bgworkers::{BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker};
use pgrx::prelude::*;
use runbook_core::matviews::{Outcome, SlotState};
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
const MAGIC: u32 = 0x6d76_7267;
pub const ERROR_BYTES: usize = 480;

/// The options of one run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub stagger_ms: i64,
    pub concurrently: bool,
    pub lock_timeout_ms: i64,
    pub statement_timeout_ms: i64,
    pub only_if_changed: bool,
}

/// The views of a run in refresh order, and the dependency edges among them as `(view, reads)`
/// index pairs into `views`.
pub struct Plan {
    pub views: Vec<ViewInfo>,
    pub edges: Vec<(usize, usize)>,
}

/// One row of a run's result.
pub struct RefreshRow {
    pub matview: String,
    pub mode: String,
    pub status: String,
    pub duration_ms: f64,
    pub rows: Option<i64>,
    pub error: Option<String>,
    /// The worker (1-based, in the order they joined the run) that took the view.
    pub worker: i32,
}

/// What a run returns: a row per view that was reached (in refresh order), how many workers it
/// had, and its total time from the call to the last worker's end.
pub struct RunResult {
    pub rows: Vec<RefreshRow>,
    /// Index of each row's view in the plan (rows of views never reached are missing).
    pub indices: Vec<usize>,
    pub workers: usize,
    pub total_ms: f64,
}

// ---- the shared segment -------------------------------------------------------------------------

#[repr(C)]
pub struct Header {
    pub magic: u32,
    pub count: u32,
    pub edge_count: u32,
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
    pub options: Options,
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

pub const PENDING: u32 = 0;
pub const CLAIMED: u32 = 1;
pub const DONE: u32 = 2;

#[repr(C)]
pub struct Slot {
    pub matview: pg_sys::Oid,
    /// PENDING, CLAIMED (a worker took it) or DONE (its fields below are written).
    pub state: AtomicU32,
    pub worker: u32,
    pub concurrent: bool,
    pub outcome: u8,
    pub duration_ms: f64,
    /// Rows after the refresh; -1 for none.
    pub rows: i64,
    pub error_len: u32,
    pub error: [u8; ERROR_BYTES],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Edge {
    pub view: u32,
    pub reads: u32,
}

/// The run's segment as one process sees it.
pub struct Shared {
    pub seg: *mut pg_sys::dsm_segment,
    base: *mut u8,
}

fn slots_offset() -> usize {
    std::mem::size_of::<Header>()
}

fn edges_offset(count: usize) -> usize {
    slots_offset() + count * std::mem::size_of::<Slot>()
}

impl Shared {
    /// Attaches to the segment `handle` (in a worker); `None` when the caller has gone.
    pub fn attach(handle: pg_sys::dsm_handle) -> Option<Shared> {
        // SAFETY: dsm_attach returns NULL for a handle whose segment no longer exists; a live
        // segment is mapped for this process until it detaches or exits.
        let seg = unsafe { pg_sys::dsm_attach(handle) };
        if seg.is_null() {
            return None;
        }
        let base = unsafe { pg_sys::dsm_segment_address(seg) } as *mut u8;
        let shared = Shared { seg, base };
        (shared.header().magic == MAGIC).then_some(shared)
    }

    pub fn header(&self) -> &Header {
        // SAFETY: the segment starts with a Header, zeroed then written by the caller before any
        // worker was started; its mutable fields are atomics.
        unsafe { &*(self.base as *const Header) }
    }

    pub fn count(&self) -> usize {
        self.header().count as usize
    }

    pub fn slot(&self, i: usize) -> &Slot {
        assert!(i < self.count());
        // SAFETY: `count` slots follow the header; a slot's plain fields are written only by the
        // worker that claimed it, before it publishes DONE with Release ordering.
        unsafe { &*(self.base.add(slots_offset()) as *const Slot).add(i) }
    }

    /// Writes a claimed slot's result and publishes it (only the claiming worker calls this).
    pub fn complete(&self, i: usize, result: &SlotResult) {
        let slot = self.slot(i) as *const Slot as *mut Slot;
        // SAFETY: this worker claimed slot `i` (CAS PENDING -> CLAIMED), so no other process
        // writes it, and no reader looks at these fields before DONE is stored below.
        unsafe {
            (*slot).worker = result.worker;
            (*slot).concurrent = result.concurrent;
            (*slot).outcome = outcome_code(result.outcome);
            (*slot).duration_ms = result.ms;
            (*slot).rows = result.rows.unwrap_or(-1);
            if let Some(e) = &result.error {
                let mut end = e.len().min(ERROR_BYTES);
                while !e.is_char_boundary(end) {
                    end -= 1;
                }
                (&mut (*slot).error)[..end].copy_from_slice(&e.as_bytes()[..end]);
                (*slot).error_len = end as u32;
            }
        }
        self.slot(i).state.store(DONE, Ordering::Release);
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
        let me = unsafe { pg_sys::MyProcPid };
        wake(h.caller_pid);
        for pid in &h.pids {
            let pid = pid.load(Ordering::Acquire);
            if pid != 0 && pid != me {
                wake(pid);
            }
        }
    }
}

/// What became of one view.
pub struct SlotResult {
    pub worker: u32,
    pub outcome: Outcome,
    pub concurrent: bool,
    pub ms: f64,
    pub rows: Option<i64>,
    pub error: Option<String>,
}

fn outcome_code(o: Outcome) -> u8 {
    match o {
        Outcome::Success => 0,
        Outcome::Failed => 1,
        Outcome::Skipped => 2,
        Outcome::Unchanged => 3,
    }
}

pub fn outcome_of(code: u8) -> Outcome {
    match code {
        0 => Outcome::Success,
        1 => Outcome::Failed,
        2 => Outcome::Skipped,
        _ => Outcome::Unchanged,
    }
}

pub fn mode_word(concurrent: bool) -> &'static str {
    if concurrent { "concurrent" } else { "plain" }
}

fn wake(pid: i32) {
    // SAFETY: BackendPidGetProc returns NULL for a pid that is not a live backend; a PGPROC's
    // latch lives in shared memory for the life of the server.
    unsafe {
        let proc_ = pg_sys::BackendPidGetProc(pid);
        if !proc_.is_null() {
            pg_sys::SetLatch(&raw mut (*proc_).procLatch);
        }
    }
}

/// Waits on this process's latch for at most `ms`, then handles interrupts (a cancel raises here).
pub fn wait_latch(ms: i64) {
    // SAFETY: MyLatch is this process's own latch; WL_EXIT_ON_PM_DEATH ends it with the server.
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

fn create_segment(plan: &Plan, options: Options) -> Shared {
    let n = plan.views.len();
    let size = edges_offset(n) + plan.edges.len() * std::mem::size_of::<Edge>();
    // SAFETY: a fresh segment of `size` bytes, zeroed (a valid state for every atomic), then
    // written by this process alone before any worker is started.
    unsafe {
        let seg = pg_sys::dsm_create(size, 0);
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        std::ptr::write_bytes(base, 0, size);
        let header = base as *mut Header;
        (*header).magic = MAGIC;
        (*header).count = n as u32;
        (*header).edge_count = plan.edges.len() as u32;
        (*header).database = pg_sys::MyDatabaseId;
        (*header).user = pg_sys::GetUserId();
        (*header).session_user = pg_sys::GetSessionUserId();
        (*header).caller_pid = pg_sys::MyProcPid;
        (*header).options = options;
        (*header).started_at = pg_sys::GetCurrentTimestamp();
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
        Shared { seg, base }
    }
}

fn start_worker(handle: pg_sys::dsm_handle) -> Option<DynamicBackgroundWorker> {
    BackgroundWorkerBuilder::new("pg_runbook matview refresh")
        .set_type(WORKER_TYPE)
        .set_library("pg_runbook")
        .set_function("pg_runbook_matview_refresh_main")
        .enable_spi_access()
        .set_argument(Some(pg_sys::Datum::from(handle)))
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic()
        .ok()
}

/// Runs the refresh of `plan` on up to `workers` background workers and waits for them.
pub fn run(plan: &Plan, options: Options, workers: usize) -> RunResult {
    let n = plan.views.len();
    if n == 0 {
        return RunResult {
            rows: Vec::new(),
            indices: Vec::new(),
            workers: 0,
            total_ms: 0.0,
        };
    }
    let shared = create_segment(plan, options);
    let h = shared.header();
    let handle = unsafe { pg_sys::dsm_segment_handle(shared.seg) };
    let mut started = Vec::new();
    for _ in 0..workers.clamp(1, MAX_WORKERS) {
        match start_worker(handle) {
            Some(w) => started.push(w),
            None => break,
        }
    }
    if started.is_empty() {
        unsafe { pg_sys::dsm_detach(shared.seg) };
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
        let done_before = reported.iter().filter(|r| **r).count();
        let mut k = done_before;
        for i in 0..n {
            if !reported[i] && shared.slot(i).state.load(Ordering::Acquire) == DONE {
                k += 1;
                reported[i] = true;
                pgrx::notice!(
                    "{}",
                    notice_text(k, n, &plan.views[i], shared.slot(i), launched)
                );
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
    let done: Vec<usize> = (0..n)
        .filter(|&i| shared.slot(i).state.load(Ordering::Acquire) == DONE)
        .collect();
    if stopped_early {
        pgrx::warning!(
            "the materialized view refresh workers stopped after {} of {n} views; see the server log",
            done.len()
        );
    }
    let total_ms = if h.finished.load(Ordering::Acquire) == 1 {
        h.total_us.load(Ordering::Acquire) as f64 / 1000.0
    } else {
        (unsafe { pg_sys::GetCurrentTimestamp() } - h.started_at) as f64 / 1000.0
    };
    let rows = done
        .iter()
        .map(|&i| {
            let slot = shared.slot(i);
            RefreshRow {
                matview: plan.views[i].display(),
                mode: mode_word(slot.concurrent).to_string(),
                status: outcome_of(slot.outcome).as_str().to_string(),
                duration_ms: (slot.duration_ms * 1000.0).round() / 1000.0,
                rows: (slot.rows >= 0).then_some(slot.rows),
                error: slot_error(slot),
                worker: slot.worker as i32,
            }
        })
        .collect();
    unsafe { pg_sys::dsm_detach(shared.seg) };
    RunResult {
        rows,
        indices: done,
        workers: launched,
        total_ms: (total_ms * 1000.0).round() / 1000.0,
    }
}

fn slot_error(slot: &Slot) -> Option<String> {
    let len = (slot.error_len as usize).min(ERROR_BYTES);
    (len > 0).then(|| String::from_utf8_lossy(&slot.error[..len]).into_owned())
}

fn notice_text(k: usize, n: usize, view: &ViewInfo, slot: &Slot, workers: usize) -> String {
    let what = match outcome_of(slot.outcome) {
        Outcome::Success => format!(
            "{}, {:.0} ms",
            if slot.concurrent {
                "concurrently"
            } else {
                "plain"
            },
            slot.duration_ms
        ),
        Outcome::Failed => format!(
            "failed after {:.0} ms: {}",
            slot.duration_ms,
            slot_error(slot).unwrap_or_default()
        ),
        Outcome::Skipped => format!("skipped: {}", slot_error(slot).unwrap_or_default()),
        Outcome::Unchanged => "unchanged since its last refresh, skipped".to_string(),
    };
    let by = if workers > 1 {
        format!(" (worker {})", slot.worker)
    } else {
        String::new()
    };
    format!("[{k}/{n}] {}: {what}{by}", view.display())
}
