//! A refresh worker: connects as the caller, takes views from the run's segment as their
//! dependencies complete, and refreshes each in its own transaction.
//!
//! Security: the worker refreshes as the calling role (never as the extension's owner), with
//! `search_path = pg_catalog, pg_temp` pinned on connect (it takes neither the caller's nor a
//! role-level one), and switches to the extension's owner only for its own bookkeeping statements
//! (log::as_owner), which are fully qualified and carry no caller-built text. A view the
//! role may not refresh is logged `skipped` with the reason: it is the caller's missing right,
//! not a failed refresh, so it does not count toward the `mv_refresh_failures` rollback trigger.

use crate::matviews::log::{
    Bookkeeping, begin_transaction, commit_transaction, insert_log_row, last_durations,
    log_in_own_transaction, record_sources, source_states, sources_of_views, without_flush_wait,
};
use crate::matviews::refresh::{
    RUN_APPLICATION_NAME, RefreshOptions, RunHeader, RunSegment, ViewResult, backend_alive, my_pid,
    wait_latch,
};
use crate::matviews::views::{ViewInfo, views_by_oid};
use crate::own_sql::{self, col};
use crate::{backend, error};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use runbook_core::matviews::{
    Outcome, SkipTracker, SlotState, next_ready, priorities, sources_unchanged,
};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What one worker knows of its run.
struct Run {
    bookkeeping: Bookkeeping,
    run_id: i64,
    views: Vec<Option<ViewInfo>>,
    sources: BTreeMap<u32, Vec<i64>>,
    names: Vec<String>,
    edges: Vec<(usize, usize)>,
}

fn report_activity(text: Option<&str>) {
    // SAFETY: plain calls into the statistics system of this backend; the text is copied.
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
// SAFETY: no other symbol of the process has this name; the postmaster looks the worker's entry
// point up by it (set_function in refresh.rs), and the signature is the one it calls.
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_runbook_matview_refresh_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    // pgrx's SIGTERM handler only sets a flag; PostgreSQL's `die` also interrupts a running
    // REFRESH, so terminating the worker (as a cancelled caller does) takes effect at once.
    backend::die_on_sigterm();
    let Some(shared) = RunSegment::attach(arg.value() as pg_sys::dsm_handle) else {
        return; // the caller has gone
    };
    let h = shared.header();
    let me = h.joined.fetch_add(1, Ordering::AcqRel) + 1;
    if me as usize <= h.pids.len() {
        h.pids[me as usize - 1].store(my_pid(), Ordering::Release);
    }
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(h.database), Some(h.session_user));
    if !wait_for(h, || h.go.load(Ordering::Acquire) == 1) {
        return;
    }
    let run = prepare(&shared, me);
    work(&shared, &run, me);
    report_activity(None);
    if h.left.fetch_add(1, Ordering::AcqRel) + 1 == h.workers.load(Ordering::Acquire) {
        finish(h, &run);
        h.finished.store(1, Ordering::Release);
    }
    shared.wake_all();
}

fn caller_gone(h: &RunHeader) -> bool {
    !backend_alive(h.caller_pid) || backend::shutdown_requested()
}

/// Waits (on the latch, woken by the caller and the other workers) until `ready`; false when the
/// caller has gone or the server shuts down.
fn wait_for(h: &RunHeader, ready: impl Fn() -> bool) -> bool {
    while !ready() {
        if caller_gone(h) {
            return false;
        }
        wait_latch(20);
    }
    true
}

/// The worker's first transaction: become the caller, pin the search_path, read the views; worker
/// 1 also writes the run's row, the others wait for it.
fn prepare(shared: &RunSegment, me: u32) -> Run {
    let h = shared.header();
    let oids: Vec<pg_sys::Oid> = (0..shared.count()).map(|i| shared.matview(i)).collect();
    begin_transaction();
    if h.user != h.session_user {
        // As SET ROLE would; the caller was running as this role, so the worker may too.
        // SAFETY: sets this backend's current role inside its open transaction, as SET ROLE
        // does; `h.user` is the caller's current role, which the session user may become.
        unsafe { pg_sys::SetCurrentRoleId(h.user, pg_sys::superuser_arg(h.user)) };
    }
    // Session-level: every later statement of this worker resolves names without any role's or
    // caller's search_path.
    own_sql::set_session("search_path", own_sql::OWN_SEARCH_PATH);
    if h.workers.load(Ordering::Acquire) > 1 {
        // A run on several workers already spreads its views over the cores max_parallel was
        // sized for: parallel query workers would compete with the run's other workers for the
        // same cores and cost a process start per REFRESH (measured on 2 cores: a third more
        // CPU per run, none of it shortening the run). The staggered refresh keeps them.
        own_sql::set_session("max_parallel_workers_per_gather", "0");
    }
    without_flush_wait();
    let bookkeeping = Bookkeeping {
        owner: own_sql::select_one(
            "SELECT extowner FROM pg_catalog.pg_extension \
             WHERE extname OPERATOR(pg_catalog.=) 'pg_runbook'",
            &[],
            |r| col::<pg_sys::Oid>(r, 1).unwrap_or(pg_sys::BOOTSTRAP_SUPERUSERID.into()),
        ),
        log_table: own_sql::ext_object("mv_refresh_log"),
        sources_table: own_sql::ext_object("mv_refresh_sources"),
        runs_table: own_sql::ext_object("mv_refresh_runs"),
        role: own_sql::select_one("SELECT CURRENT_USER::pg_catalog.text", &[], |r| {
            col::<String>(r, 1).unwrap_or_default()
        }),
        worker: me as i32,
    };
    if me == 1 {
        let run_id = start_run(h, &bookkeeping, oids.len());
        h.run_id.store(run_id, Ordering::Release);
    }
    let found = views_by_oid(&oids);
    let views: Vec<Option<ViewInfo>> = oids
        .iter()
        .map(|oid| found.iter().find(|v| v.oid == *oid).cloned())
        .collect();
    if me == 1 && h.workers.load(Ordering::Acquire) > 1 {
        for (i, ms) in last_durations(&bookkeeping, &views).into_iter().enumerate() {
            shared.set_expected(i, ms);
        }
    }
    let present: Vec<pg_sys::Oid> = views.iter().flatten().map(|v| v.oid).collect();
    let sources = sources_of_views(&present);
    commit_transaction();
    if me == 1 {
        h.setup_done.store(1, Ordering::Release);
        shared.wake_all();
    }
    let names = views
        .iter()
        .map(|v| v.as_ref().map(|v| v.display()).unwrap_or_default())
        .collect();
    let run_id = if wait_for(h, || h.setup_done.load(Ordering::Acquire) == 1) {
        h.run_id.load(Ordering::Acquire)
    } else {
        0
    };
    begin_transaction();
    own_sql::set_session(
        "application_name",
        &format!("{RUN_APPLICATION_NAME}{run_id}"),
    );
    commit_transaction();
    Run {
        bookkeeping,
        run_id,
        views,
        sources,
        names,
        edges: shared.edges(),
    }
}

/// Prunes the log, takes a run id and writes the run's row (worker 1, as the extension's owner).
fn start_run(h: &RunHeader, t: &Bookkeeping, views: usize) -> i64 {
    let o = h.options;
    let options = format!(
        "stagger {} ms, concurrently {}, lock_timeout {} ms, statement_timeout {} ms, only_if_changed {}",
        o.stagger_ms, o.concurrently, o.lock_timeout_ms, o.statement_timeout_ms, o.only_if_changed
    );
    t.as_owner(|| {
        own_sql::select_one(
            &format!("SELECT {}.prune_mv_refresh_log()", own_sql::ext_schema()),
            &[],
            |_| (),
        );
        own_sql::select_mut_one(
            &format!(
                "INSERT INTO {} (run_id, worker_pid, caller_pid, views, options, started_at, \
                                 parallelism, refreshed_by) \
                 VALUES (pg_catalog.nextval($1::pg_catalog.regclass), pg_catalog.pg_backend_pid(), \
                         $2, $3, $4, pg_catalog.now(), $5, $6) RETURNING run_id",
                t.runs_table
            ),
            &[
                own_sql::ext_object("mv_refresh_run_id").into(),
                h.caller_pid.into(),
                (views as i32).into(),
                options.into(),
                (h.workers.load(Ordering::Acquire) as i32).into(),
                t.role.as_str().into(),
            ],
            |r| col::<i64>(r, 1).unwrap_or(0),
        )
    })
}

/// The last worker out writes the run's end, its total time and its parallelism.
fn finish(h: &RunHeader, run: &Run) {
    let total_us = backend::now_micros() - h.started_at;
    h.total_us.store(total_us, Ordering::Release);
    begin_transaction();
    without_flush_wait();
    run.bookkeeping.as_owner(|| {
        own_sql::execute(
            &format!(
                "UPDATE {} SET finished_at = pg_catalog.clock_timestamp(), total_ms = $2 \
                 WHERE run_id OPERATOR(pg_catalog.=) $1",
                run.bookkeeping.runs_table
            ),
            &[run.run_id.into(), (total_us as f64 / 1000.0).into()],
        )
    });
    commit_transaction();
}

/// Takes ready views until none is left; waits while every pending view waits for another's
/// refresh.
fn work(shared: &RunSegment, run: &Run, me: u32) {
    let h = shared.header();
    let o = h.options;
    let mut tracker = SkipTracker::new(run.names.clone(), &run.edges);
    // One worker (the staggered refresh) keeps the documented order: dependencies first, then
    // schema and name. Several take the longest chains (by the views' last logged times) first.
    let n = run.names.len();
    let priority = if h.workers.load(Ordering::Acquire) > 1 {
        priorities(&shared.expected(), &run.edges)
    } else {
        vec![1.0; n]
    };
    let mut previous_refreshed = false;
    loop {
        if caller_gone(h) {
            break;
        }
        let states = shared.states();
        if !states.contains(&SlotState::Pending) {
            break;
        }
        let Some(i) = next_ready(&states, &run.edges, &priority) else {
            wait_latch(20);
            continue;
        };
        if !shared.claim(i) {
            continue;
        }
        if previous_refreshed && o.stagger_ms > 0 {
            stagger(o.stagger_ms);
        }
        for &(view, reads) in &run.edges {
            if view == i && states[reads] == SlotState::Done {
                tracker.record(reads, shared.outcome(reads));
            }
        }
        let result = refresh_or_skip(run, i, tracker.skip_reason(i), &o, me);
        previous_refreshed = matches!(result.outcome, Outcome::Success | Outcome::Failed);
        shared.complete(i, &result);
        shared.wake_all();
    }
}

/// The result of a view not refreshed: skipped, or failed before its refresh began.
fn not_refreshed(me: u32, outcome: Outcome, concurrent: bool, reason: String) -> ViewResult {
    ViewResult {
        worker: me,
        outcome,
        concurrent,
        duration_ms: 0.0,
        rows: None,
        error: Some(reason),
    }
}

/// Whether `v` is refreshed CONCURRENTLY under options `o`: asked for, and possible (a populated
/// view with a usable unique index).
fn refreshes_concurrently(v: &ViewInfo, o: &RefreshOptions) -> bool {
    o.concurrently && v.populated && v.unique_index.is_some()
}

/// Refreshes (or skips) view `i` of the run.
fn refresh_or_skip(
    run: &Run,
    i: usize,
    skip: Option<String>,
    o: &RefreshOptions,
    me: u32,
) -> ViewResult {
    let t = &run.bookkeeping;
    let skipped = |v: &ViewInfo, reason: String| {
        let result = not_refreshed(me, Outcome::Skipped, refreshes_concurrently(v, o), reason);
        log_in_own_transaction(t, run.run_id, v, &result);
        result
    };
    match (&run.views[i], skip) {
        (None, _) => not_refreshed(
            me,
            Outcome::Failed,
            false,
            "the materialized view no longer exists".to_string(),
        ),
        (Some(v), _) if !v.may_refresh => skipped(
            v,
            format!(
                "role {} may not refresh it: only its owner {} and members of that role may",
                own_sql::quote_ident(&t.role),
                own_sql::quote_ident(&v.owner)
            ),
        ),
        (Some(v), Some(reason)) => skipped(v, reason),
        (Some(v), None) => {
            let sources = run
                .sources
                .get(&v.oid.to_u32())
                .map_or(&[][..], |s| s.as_slice());
            refresh_one(t, run.run_id, v, sources, o, me)
        }
    }
}

fn stagger(ms: i64) {
    report_activity(Some(&format!(
        "stagger: waiting {} before the next refresh",
        own_sql::human_ms(ms as f64)
    )));
    let deadline = Instant::now() + Duration::from_millis(ms as u64);
    while let Some(left) = deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
    {
        wait_latch(left.as_millis().max(1) as i64);
    }
}

/// Runs a REFRESH statement the way SPI runs a utility statement, but keeps the row count the
/// executor reports for it (the rows the view holds afterwards, what pg_stat_statements records),
/// which SPI drops for REFRESH: mv_refresh_log.rows_after then costs no second scan of the view.
fn refresh_counting_rows(sql: &str) -> i64 {
    let text = CString::new(sql)
        .unwrap_or_else(|_| error::spi_failure("refreshing", "a NUL byte in the statement"));
    // SAFETY: the statement is one REFRESH we built from a quoted name, parsed in this worker's
    // open transaction (an ERROR raises through pg_guard and aborts it); the parse tree and the
    // PlannedStmt are palloc'd in the current memory context and outlive the call; `text` lives
    // until the end of this function, after ProcessUtility returns; the snapshot pushed here is
    // popped before return, as ProcessUtility's callers do.
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

/// Refreshes one view in its own transaction; a failure is rolled back and logged in another.
fn refresh_one(
    t: &Bookkeeping,
    run_id: i64,
    v: &ViewInfo,
    sources: &[i64],
    o: &RefreshOptions,
    me: u32,
) -> ViewResult {
    let started = Instant::now();
    let concurrent = refreshes_concurrently(v, o);
    let result = |outcome, duration_ms, rows, error| ViewResult {
        worker: me,
        outcome,
        concurrent,
        duration_ms,
        rows,
        error,
    };
    let attempt = PgTryBuilder::new(AssertUnwindSafe(|| {
        begin_transaction();
        // Not through SQL: a set_config(..., true) run by a catalog helper would end with it.
        own_sql::set_local("lock_timeout", &format!("{}ms", o.lock_timeout_ms));
        own_sql::set_local(
            "statement_timeout",
            &format!("{}ms", o.statement_timeout_ms),
        );
        // The view and its sources as the worker read them when the run started (a view dropped
        // since then makes the REFRESH fail, and that is logged); not re-read per view, to keep
        // overhead small.
        let (sources, before) = source_states(t, v, sources);
        if o.only_if_changed && v.populated && sources_unchanged(&before, &sources) {
            without_flush_wait();
            let unchanged = result(Outcome::Unchanged, 0.0, None, None);
            insert_log_row(t, run_id, v, &unchanged);
            commit_transaction();
            return Ok(unchanged);
        }
        let sql = format!(
            "REFRESH MATERIALIZED VIEW {}{}",
            if concurrent { "CONCURRENTLY " } else { "" },
            v.display()
        );
        report_activity(Some(&sql));
        if o.statement_timeout_ms > 0 {
            backend::arm_statement_timeout(o.statement_timeout_ms as i32);
        }
        let rows = refresh_counting_rows(&sql);
        backend::disarm_statement_timeout();
        let refreshed = result(
            Outcome::Success,
            started.elapsed().as_secs_f64() * 1000.0,
            Some(rows),
            None,
        );
        insert_log_row(t, run_id, v, &refreshed);
        record_sources(t, v, &sources);
        commit_transaction();
        Ok(refreshed)
    }))
    .catch_others(|e| Err(own_sql::caught_message(&e)))
    .execute();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match attempt {
        Ok(mut done) => {
            // The row returned counts the commit too; the log row was written before it.
            if done.outcome == Outcome::Success {
                done.duration_ms = ms;
            }
            done
        }
        Err(message) => {
            backend::disarm_statement_timeout();
            // SAFETY: the refresh's transaction failed and is ours to end; the worker starts a
            // new one for the next view.
            unsafe { pg_sys::AbortCurrentTransaction() };
            let failed = result(Outcome::Failed, ms, None, Some(message));
            log_in_own_transaction(t, run_id, v, &failed);
            failed
        }
    }
}
