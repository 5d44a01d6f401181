//! The refresh run: a dynamic background worker started for each call refreshes the views, one
//! transaction per view, while the calling session waits, relays a NOTICE per view and returns
//! the rows.
//!
//! Why a worker: a function's body runs inside its caller's transaction, so refreshes done there
//! would hold every view's lock until the end and be undone together by any later error or a
//! cancel. The worker commits each view (and its log row) on its own.
//!
//! Why dynamic shared memory for the run's parameters and results rather than a table row: the
//! caller's own writes are not visible to the worker until the caller commits, which is after
//! the worker has finished. The caller creates a segment holding the parameters and one slot per
//! view, passes its handle as the worker's argument, and the worker fills the slots as it goes.
//! Readers in other sessions see runs through the committed tables (mv_refresh_runs, the log).

use crate::catalog::{self, col};
use crate::error;
use crate::matview_log::{
    Tables, as_owner, begin, commit, insert_log, log_row, record_sources, source_states,
    sources_of_views, without_flush_wait,
};
use crate::matviews::{self, ViewInfo};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, SignalWakeFlags,
};
use pgrx::prelude::*;
use runbook_core::matviews::{Outcome, SkipTracker, sources_unchanged};
use std::ffi::{CString, c_int};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// `backend_type` of the worker in pg_stat_activity.
pub const WORKER_TYPE: &str = "pg_runbook matview refresh";
const MAGIC: u32 = 0x6d76_7266;
const ERROR_BYTES: usize = 480;

/// The options of one run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub stagger_ms: i64,
    pub concurrently: bool,
    pub lock_timeout_ms: i64,
    pub statement_timeout_ms: i64,
    pub only_if_changed: bool,
}

/// One row of a run's result.
pub struct RefreshRow {
    pub matview: String,
    pub mode: String,
    pub status: String,
    pub duration_ms: f64,
    pub error: Option<String>,
}

#[repr(C)]
struct Header {
    magic: u32,
    count: u32,
    database: pg_sys::Oid,
    /// The role the refreshes run as (the caller's current role), and the session's login role
    /// the worker connects as (a NOLOGIN role cannot start a worker connection in PostgreSQL 15).
    user: pg_sys::Oid,
    session_user: pg_sys::Oid,
    caller_pid: i32,
    options: Options,
    /// Slots the worker has filled, in order.
    done: AtomicU32,
    /// 1 once the worker has finished the run.
    finished: AtomicU32,
}

#[repr(C)]
struct Slot {
    matview: pg_sys::Oid,
    concurrent: bool,
    outcome: u8,
    duration_ms: f64,
    error_len: u32,
    error: [u8; ERROR_BYTES],
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

pub fn mode_word(concurrent: bool) -> &'static str {
    if concurrent { "concurrent" } else { "plain" }
}

unsafe extern "C-unwind" {
    // utils/timeout.h is not in pgrx's bindings. SPI does not arm statement_timeout (only the
    // client protocol loop does), so the worker arms it around each REFRESH itself.
    fn enable_timeout_after(id: c_int, delay_ms: c_int);
    fn disable_timeout(id: c_int, keep_indicator: bool);
    // PostgreSQL's SIGTERM handler for backends (tcop/postgres.c).
    fn die(signal: c_int);
}
/// `STATEMENT_TIMEOUT` in PostgreSQL's `TimeoutId` enum (the same from 13 to 18).
const STATEMENT_TIMEOUT: c_int = 3;

fn wake(pid: i32) {
    unsafe {
        let proc_ = pg_sys::BackendPidGetProc(pid);
        if !proc_.is_null() {
            pg_sys::SetLatch(&raw mut (*proc_).procLatch);
        }
    }
}

fn wait_latch(ms: i64) {
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

/// Runs the refresh of `views` (already in refresh order) in a worker and waits for it.
pub fn run(views: Vec<ViewInfo>, options: Options) -> Vec<RefreshRow> {
    if views.is_empty() {
        return Vec::new();
    }
    let n = views.len();
    let size = std::mem::size_of::<Header>() + n * std::mem::size_of::<Slot>();
    let (seg, header, slots) = unsafe {
        let seg = pg_sys::dsm_create(size, 0);
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        std::ptr::write_bytes(base, 0, size);
        let header = base as *mut Header;
        (*header).magic = MAGIC;
        (*header).count = n as u32;
        (*header).database = pg_sys::MyDatabaseId;
        (*header).user = pg_sys::GetUserId();
        (*header).session_user = pg_sys::GetSessionUserId();
        (*header).caller_pid = pg_sys::MyProcPid;
        (*header).options = options;
        let slots = base.add(std::mem::size_of::<Header>()) as *mut Slot;
        for (i, v) in views.iter().enumerate() {
            (*slots.add(i)).matview = v.oid;
        }
        (seg, &*header, slots)
    };
    let handle = unsafe { pg_sys::dsm_segment_handle(seg) };
    let worker = BackgroundWorkerBuilder::new("pg_runbook matview refresh")
        .set_type(WORKER_TYPE)
        .set_library("pg_runbook")
        .set_function("pg_runbook_matview_refresh_main")
        .enable_spi_access()
        .set_argument(Some(pg_sys::Datum::from(handle)))
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic()
        .unwrap_or_else(|_| {
            error::not_ready(
                "could not start the materialized view refresh worker",
                "no background worker slot is free: raise max_worker_processes or retry",
            )
        });

    let worker = std::cell::Cell::new(Some(worker));
    let worker_for_cancel = AssertUnwindSafe(&worker);
    let reported = std::cell::Cell::new(0usize);
    let report = |upto: usize| {
        while reported.get() < upto {
            let i = reported.get();
            let slot = unsafe { &*slots.add(i) };
            pgrx::notice!("{}", notice_text(i + 1, n, &views[i], slot));
            reported.set(i + 1);
        }
    };
    let stopped_early = PgTryBuilder::new(AssertUnwindSafe(|| {
        loop {
            report(header.done.load(Ordering::Acquire) as usize);
            if header.finished.load(Ordering::Acquire) == 1 {
                return false;
            }
            let status = worker.take().map(|w| {
                let s = w.pid();
                worker.set(Some(w));
                s
            });
            if let Some(Err(
                BackgroundWorkerStatus::Stopped | BackgroundWorkerStatus::PostmasterDied,
            )) = status
            {
                return true;
            }
            wait_latch(200);
        }
    }))
    .catch_others(|e| {
        let worker = &worker_for_cancel;
        // The caller was cancelled (or failed): stop the run. Views already refreshed stay
        // refreshed and logged; the one in progress is rolled back by the worker's exit.
        if let Some(w) = worker.0.take() {
            w.terminate();
        }
        e.rethrow()
    })
    .execute();
    let done = header.done.load(Ordering::Acquire) as usize;
    report(done);
    if stopped_early && header.finished.load(Ordering::Acquire) != 1 {
        pgrx::warning!(
            "the materialized view refresh worker stopped after {done} of {n} views; see the server log"
        );
    }
    let rows = (0..done)
        .map(|i| {
            let slot = unsafe { &*slots.add(i) };
            RefreshRow {
                matview: views[i].display(),
                mode: mode_word(slot.concurrent).to_string(),
                status: outcome_of(slot.outcome).as_str().to_string(),
                duration_ms: (slot.duration_ms * 1000.0).round() / 1000.0,
                error: slot_error(slot),
            }
        })
        .collect();
    unsafe { pg_sys::dsm_detach(seg) };
    rows
}

fn slot_error(slot: &Slot) -> Option<String> {
    let len = (slot.error_len as usize).min(ERROR_BYTES);
    (len > 0).then(|| String::from_utf8_lossy(&slot.error[..len]).into_owned())
}

fn notice_text(k: usize, n: usize, view: &ViewInfo, slot: &Slot) -> String {
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
    format!("[{k}/{n}] {}: {what}", view.display())
}

// ---- the worker ---------------------------------------------------------------------------------

fn report_activity(text: Option<&str>) {
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        match text.and_then(|t| CString::new(t).ok()) {
            Some(t) => {
                pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, t.as_ptr())
            }
            None => {
                pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null())
            }
        }
    }
}

/// The worker's entry point; its argument is the handle of the caller's segment.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_runbook_matview_refresh_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    // pgrx's SIGTERM handler only sets a flag; PostgreSQL's `die` also interrupts a running
    // REFRESH, so terminating the worker (as a cancelled caller does) takes effect at once.
    unsafe { pg_sys::pqsignal(pg_sys::SIGTERM as c_int, Some(die)) };
    let seg = unsafe { pg_sys::dsm_attach(arg.value() as pg_sys::dsm_handle) };
    if seg.is_null() {
        return; // the caller has gone
    }
    let base = unsafe { pg_sys::dsm_segment_address(seg) } as *mut u8;
    let header = unsafe { &*(base as *const Header) };
    if header.magic != MAGIC {
        return;
    }
    let slots = unsafe {
        std::slice::from_raw_parts_mut(
            base.add(std::mem::size_of::<Header>()) as *mut Slot,
            header.count as usize,
        )
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(
        Some(header.database),
        Some(header.session_user),
    );
    refresh_all(header, slots);
    header.finished.store(1, Ordering::Release);
    wake(header.caller_pid);
}

fn refresh_all(header: &Header, slots: &mut [Slot]) {
    let o = header.options;
    let oids: Vec<pg_sys::Oid> = slots.iter().map(|s| s.matview).collect();
    begin();
    if header.user != header.session_user {
        // As SET ROLE would; the caller was running as this role, so the worker may too.
        unsafe { pg_sys::SetCurrentRoleId(header.user, pg_sys::superuser_arg(header.user)) };
    }
    without_flush_wait();
    let tables = Tables {
        owner: catalog::select_one(
            "SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'pg_runbook'",
            &[],
            |r| col::<pg_sys::Oid>(r, 1).unwrap_or(pg_sys::BOOTSTRAP_SUPERUSERID.into()),
        ),
        log: catalog::ext_object("mv_refresh_log"),
        sources: catalog::ext_object("mv_refresh_sources"),
        runs: catalog::ext_object("mv_refresh_runs"),
    };
    let run_id = as_owner(&tables, || {
        catalog::select_one(
            &format!("SELECT {}.prune_mv_refresh_log()", catalog::ext_schema()),
            &[],
            |_| (),
        );
        catalog::select_one(
            &format!(
                "SELECT pg_catalog.nextval('{}')",
                catalog::ext_object("mv_refresh_run_id").replace('\'', "''")
            ),
            &[],
            |r| col::<i64>(r, 1).unwrap_or(0),
        )
    });
    let options = format!(
        "stagger {} ms, concurrently {}, lock_timeout {} ms, statement_timeout {} ms, only_if_changed {}",
        o.stagger_ms, o.concurrently, o.lock_timeout_ms, o.statement_timeout_ms, o.only_if_changed
    );
    as_owner(&tables, || {
        catalog::execute(
            &format!(
                "INSERT INTO {} (run_id, worker_pid, caller_pid, views, options, started_at) \
             VALUES ($1, pg_catalog.pg_backend_pid(), $2, $3, $4, pg_catalog.now())",
                tables.runs
            ),
            &[
                run_id.into(),
                header.caller_pid.into(),
                (slots.len() as i32).into(),
                options.into(),
            ],
        )
    });
    let found = matviews::views_by_oid(&oids);
    let views: Vec<Option<ViewInfo>> = oids
        .iter()
        .map(|oid| found.iter().find(|v| v.oid == *oid).cloned())
        .collect();
    let present: Vec<ViewInfo> = views.iter().flatten().cloned().collect();
    let sources = sources_of_views(&present.iter().map(|v| v.oid).collect::<Vec<_>>());
    // A view's sources that are views of this run are its dependencies (slot index pairs).
    let slot_of = |oid: i64| oids.iter().position(|o| o.to_u32() as i64 == oid);
    let edges: Vec<(usize, usize)> = sources
        .iter()
        .flat_map(|(view, rels)| rels.iter().map(move |rel| (*view as i64, *rel)))
        .filter_map(|(view, rel)| Some((slot_of(view)?, slot_of(rel)?)))
        .filter(|(a, b)| a != b)
        .collect();
    commit();

    let names = views
        .iter()
        .map(|v| v.as_ref().map(|v| v.display()).unwrap_or_default())
        .collect();
    let mut tracker = SkipTracker::new(names, &edges);
    let mut previous_refreshed = false;
    for (i, slot) in slots.iter_mut().enumerate() {
        let caller_gone = unsafe { pg_sys::BackendPidGetProc(header.caller_pid).is_null() };
        if caller_gone || unsafe { pg_sys::ShutdownRequestPending } != 0 {
            break;
        }
        if previous_refreshed && o.stagger_ms > 0 {
            stagger(o.stagger_ms);
        }
        let (outcome, concurrent, ms, err) = match (&views[i], tracker.skip_reason(i)) {
            (None, _) => (
                Outcome::Failed,
                false,
                0.0,
                Some("the materialized view no longer exists".to_string()),
            ),
            (Some(v), Some(reason)) => {
                let concurrent = o.concurrently && v.populated && v.unique_index.is_some();
                log_row(
                    &tables,
                    run_id,
                    v,
                    concurrent,
                    Outcome::Skipped,
                    0.0,
                    None,
                    Some(&reason),
                );
                (Outcome::Skipped, concurrent, 0.0, Some(reason))
            }
            (Some(v), None) => refresh_one(
                &tables,
                run_id,
                v,
                sources
                    .get(&v.oid.to_u32())
                    .map_or(&[][..], |s| s.as_slice()),
                &o,
            ),
        };
        tracker.record(i, outcome);
        previous_refreshed = outcome == Outcome::Success || outcome == Outcome::Failed;
        slot.concurrent = concurrent;
        slot.outcome = outcome_code(outcome);
        slot.duration_ms = ms;
        if let Some(e) = err {
            let mut end = e.len().min(ERROR_BYTES);
            while !e.is_char_boundary(end) {
                end -= 1;
            }
            slot.error[..end].copy_from_slice(&e.as_bytes()[..end]);
            slot.error_len = end as u32;
        }
        header.done.fetch_add(1, Ordering::Release);
        wake(header.caller_pid);
    }
    report_activity(None);
    begin();
    without_flush_wait();
    as_owner(&tables, || {
        catalog::execute(
            &format!(
                "UPDATE {} SET finished_at = pg_catalog.clock_timestamp() WHERE run_id = $1",
                tables.runs
            ),
            &[run_id.into()],
        )
    });
    commit();
}

/// Runs a REFRESH statement the way SPI runs a utility statement, but keeps the row count the
/// executor reports for it (the rows the view holds afterwards, what pg_stat_statements records),
/// which SPI drops for REFRESH: mv_refresh_log.rows_after then costs no second scan of the view.
fn refresh_counting_rows(sql: &str) -> i64 {
    let text = CString::new(sql)
        .unwrap_or_else(|_| error::spi_failure("refreshing", "a NUL byte in the statement"));
    unsafe {
        let parsed = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        if parsed.is_null() || (*parsed).length != 1 {
            error::spi_failure("refreshing", "the statement did not parse as one REFRESH");
        }
        let raw = (*(*parsed).elements).ptr_value as *mut pg_sys::RawStmt;
        let stmt =
            pg_sys::palloc0(std::mem::size_of::<pg_sys::PlannedStmt>()) as *mut pg_sys::PlannedStmt;
        (*stmt).type_ = pg_sys::NodeTag::T_PlannedStmt;
        (*stmt).commandType = pg_sys::CmdType::CMD_UTILITY;
        (*stmt).canSetTag = true;
        (*stmt).utilityStmt = (*raw).stmt;
        (*stmt).stmt_location = (*raw).stmt_location;
        (*stmt).stmt_len = (*raw).stmt_len;
        let mut qc = pg_sys::QueryCompletion::default();
        pg_sys::CommandCounterIncrement();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        pg_sys::ProcessUtility(
            stmt,
            text.as_ptr(),
            false,
            pg_sys::ProcessUtilityContext::PROCESS_UTILITY_QUERY,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            pg_sys::None_Receiver,
            &mut qc,
        );
        pg_sys::PopActiveSnapshot();
        pg_sys::CommandCounterIncrement();
        qc.nprocessed as i64
    }
}

fn stagger(ms: i64) {
    report_activity(Some(&format!(
        "stagger: waiting {} before the next refresh",
        catalog::human_ms(ms as f64)
    )));
    let deadline = Instant::now() + Duration::from_millis(ms as u64);
    while let Some(left) = deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
    {
        wait_latch(left.as_millis().max(1) as i64);
    }
}

/// Refreshes one view in its own transaction; a failure is rolled back and logged in another.
fn refresh_one(
    t: &Tables,
    run_id: i64,
    v: &ViewInfo,
    sources: &[i64],
    o: &Options,
) -> (Outcome, bool, f64, Option<String>) {
    let started = Instant::now();
    let concurrent =
        std::cell::Cell::new(o.concurrently && v.populated && v.unique_index.is_some());
    let attempt = PgTryBuilder::new(AssertUnwindSafe(|| {
        begin();
        catalog::set_local("lock_timeout", &format!("{}ms", o.lock_timeout_ms));
        catalog::set_local(
            "statement_timeout",
            &format!("{}ms", o.statement_timeout_ms),
        );
        // The view and its sources as the worker read them when the run started (a view dropped
        // since then makes the REFRESH fail, and that is logged); not re-read per view, to keep
        // overhead small.
        let (sources, before) = source_states(t, v, sources);
        if o.only_if_changed && v.populated && sources_unchanged(&before, &sources) {
            without_flush_wait();
            insert_log(
                t,
                run_id,
                v,
                concurrent.get(),
                Outcome::Unchanged,
                0.0,
                None,
                None,
            );
            commit();
            return Ok(Outcome::Unchanged);
        }
        let sql = format!(
            "REFRESH MATERIALIZED VIEW {}{}",
            if concurrent.get() {
                "CONCURRENTLY "
            } else {
                ""
            },
            v.display()
        );
        report_activity(Some(&sql));
        if o.statement_timeout_ms > 0 {
            unsafe { enable_timeout_after(STATEMENT_TIMEOUT, o.statement_timeout_ms as c_int) };
        }
        let rows = refresh_counting_rows(&sql);
        unsafe { disable_timeout(STATEMENT_TIMEOUT, false) };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        insert_log(
            t,
            run_id,
            v,
            concurrent.get(),
            Outcome::Success,
            ms,
            Some(rows),
            None,
        );
        record_sources(t, v, &sources);
        commit();
        Ok(Outcome::Success)
    }))
    .catch_others(|e| {
        let message = match &e {
            pg_sys::panic::CaughtError::PostgresError(r)
            | pg_sys::panic::CaughtError::ErrorReport(r)
            | pg_sys::panic::CaughtError::RustPanic { ereport: r, .. } => r.message().to_string(),
        };
        Err(message)
    })
    .execute();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match attempt {
        Ok(outcome) => (
            outcome,
            concurrent.get(),
            if outcome == Outcome::Success { ms } else { 0.0 },
            None,
        ),
        Err(message) => {
            unsafe {
                disable_timeout(STATEMENT_TIMEOUT, false);
                pg_sys::AbortCurrentTransaction();
            }
            log_row(
                t,
                run_id,
                v,
                concurrent.get(),
                Outcome::Failed,
                ms,
                None,
                Some(&message),
            );
            (Outcome::Failed, concurrent.get(), ms, Some(message))
        }
    }
}
