//! The few PostgreSQL backend facilities the extension calls directly, each declared and wrapped
//! once: this backend's database and clock, PostgreSQL's own SIGTERM handler for workers, and the
//! statement timeout (utils/timeout.h, which pgrx does not bind).
//!
//! Why the statement timeout by hand: SPI does not arm `statement_timeout` for the statements a
//! function or a background worker runs (only the client protocol loop does), so the refresh
//! worker and the bounded counts of the migration preconditions arm it around their statements.

use pgrx::pg_sys;
use std::ffi::c_int;

// SAFETY: the signatures are PostgreSQL 15's (utils/timeout.h, tcop/tcopprot.h); every call
// goes through the wrappers below.
unsafe extern "C-unwind" {
    fn enable_timeout_after(id: c_int, delay_ms: c_int);
    fn enable_timeout_at(id: c_int, fin_time: pg_sys::TimestampTz);
    fn disable_timeout(id: c_int, keep_indicator: bool);
    fn get_timeout_active(id: c_int) -> bool;
    fn get_timeout_finish_time(id: c_int) -> pg_sys::TimestampTz;
    /// PostgreSQL's SIGTERM handler for backends (tcop/postgres.c): sets ProcDiePending, so even
    /// a running statement is interrupted and the process leaves with a FATAL.
    fn die(signal: c_int);
}

/// `STATEMENT_TIMEOUT` in PostgreSQL's `TimeoutId` enum (utils/timeout.h of PostgreSQL 15).
const STATEMENT_TIMEOUT: c_int = 3;

/// The database this backend is connected to (InvalidOid in the launcher, which connects to none).
pub fn database() -> pg_sys::Oid {
    // SAFETY: a plain read of a backend-global that PostgreSQL sets once at connection.
    unsafe { pg_sys::MyDatabaseId }
}

/// Whether the library is being loaded by `shared_preload_libraries` at server start (the only
/// time shared memory can be requested and a static background worker registered).
pub fn preloading() -> bool {
    // SAFETY: a plain bool that PostgreSQL sets before and clears after loading the preloaded
    // libraries, in the postmaster's single thread; reading it by value is always allowed.
    unsafe { pg_sys::process_shared_preload_libraries_in_progress }
}

/// The current time in PostgreSQL's microseconds since 2000-01-01.
pub fn now_micros() -> i64 {
    // SAFETY: reads the clock; no state is touched.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// Routes SIGTERM to PostgreSQL's `die`, as ordinary backends have it, after pgrx's handlers are
/// attached: a running statement is then interrupted at once instead of at the next check of
/// pgrx's flag (which `die` never sets: read `shutdown_requested()` instead).
pub fn die_on_sigterm() {
    // SAFETY: installs PostgreSQL's own signal handler for this process.
    unsafe { pg_sys::pqsignal(pg_sys::SIGTERM as c_int, Some(die)) };
}

/// Whether this process was asked to leave: SIGTERM (through `die`) or a shutdown request.
pub fn shutdown_requested() -> bool {
    // SAFETY: plain reads of flags set by signal handlers.
    unsafe { pg_sys::ProcDiePending != 0 || pg_sys::ShutdownRequestPending != 0 }
}

/// The deadline of the statement timeout armed now (the caller's `statement_timeout`), if any.
pub fn statement_deadline() -> Option<pg_sys::TimestampTz> {
    // SAFETY: reads the state of PostgreSQL's timeout module.
    unsafe {
        get_timeout_active(STATEMENT_TIMEOUT).then(|| get_timeout_finish_time(STATEMENT_TIMEOUT))
    }
}

/// Arms the statement timeout to fire `delay_ms` from now (replacing any deadline armed).
pub fn arm_statement_timeout(delay_ms: i32) {
    // SAFETY: the timeout module is initialised in every backend and worker with a connection.
    unsafe { enable_timeout_after(STATEMENT_TIMEOUT, delay_ms as c_int) };
}

/// Arms the statement timeout to fire at `deadline` (restores a caller's deadline).
pub fn arm_statement_timeout_at(deadline: pg_sys::TimestampTz) {
    // SAFETY: as in arm_statement_timeout.
    unsafe { enable_timeout_at(STATEMENT_TIMEOUT, deadline) };
}

/// Disarms the statement timeout (harmless when it is not armed).
pub fn disarm_statement_timeout() {
    // SAFETY: as in arm_statement_timeout.
    unsafe { disable_timeout(STATEMENT_TIMEOUT, false) };
}
