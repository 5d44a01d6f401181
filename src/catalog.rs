//! Small SPI helpers shared by every module: running a query and mapping its rows, quoting,
//! finding the extension's schema, and running the extension's own queries under a short
//! lock_timeout.

use crate::error;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{SpiHeapTupleData, SpiResult};
use std::ffi::CString;

/// Unwraps an SPI result; a failure is a bug in pg_runbook and is reported as such.
pub fn spi<T>(context: &str, result: SpiResult<T>) -> T {
    result.unwrap_or_else(|e| error::spi_failure(context, e))
}

/// Column `n` (1-based) of a row, NULL as `None`.
pub fn col<T: IntoDatum + FromDatum>(row: &SpiHeapTupleData, n: usize) -> Option<T> {
    spi("reading a column", row.get::<T>(n))
}

/// Runs a read-only query and maps each row.
pub fn select<T>(sql: &str, args: &[DatumWithOid], map: impl Fn(&SpiHeapTupleData) -> T) -> Vec<T> {
    Spi::connect(|client| {
        let rows = spi(sql, client.select(sql, None, args));
        rows.map(|row| map(&row)).collect()
    })
}

/// Runs a read-only query expected to return exactly one row, and maps it.
pub fn select_one<T>(sql: &str, args: &[DatumWithOid], map: impl Fn(&SpiHeapTupleData) -> T) -> T {
    select(sql, args, map)
        .into_iter()
        .next()
        .unwrap_or_else(|| error::spi_failure(sql, "the query returned no row"))
}

/// Runs a statement that may write, and returns the number of rows it processed.
pub fn execute(sql: &str, args: &[DatumWithOid]) -> usize {
    Spi::connect_mut(|client| spi(sql, client.update(sql, None, args)).len())
}

/// `ident` quoted as an SQL identifier when it needs to be (as `quote_ident` does).
pub fn quote_ident(ident: &str) -> String {
    pgrx::spi::quote_identifier(ident)
}

/// `text` quoted as an SQL string literal.
pub fn quote_literal(text: &str) -> String {
    pgrx::spi::quote_literal(text)
}

/// The schema the extension was created in, quoted for use in dynamic SQL.
///
/// The extension never finds its own tables through the caller's search_path: SQL built in Rust
/// names them as `{ext_schema}.table`.
pub fn ext_schema() -> String {
    let schema = ext_schema_if_installed();
    match schema {
        Some(s) => s,
        None => error::not_ready(
            "extension \"pg_runbook\" is not installed in this database",
            "run CREATE EXTENSION pg_runbook",
        ),
    }
}

/// `name` qualified with the extension's schema: `"runbook".query_cache`.
pub fn ext_object(name: &str) -> String {
    format!("{}.{}", ext_schema(), quote_ident(name))
}

/// Runs `f` with the given settings in force, then restores the caller's values, as a function's
/// `SET` clause would. On an ERROR, the (sub)transaction abort restores them.
pub fn with_settings<R>(settings: &[(&str, String)], f: impl FnOnce() -> R) -> R {
    let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
    for (name, value) in settings {
        let name = CString::new(*name).expect("setting names have no NUL");
        let value = CString::new(value.as_str()).expect("setting values have no NUL");
        unsafe {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
    }
    let result = f();
    unsafe { pg_sys::AtEOXact_GUC(true, nest_level) };
    result
}

/// Runs `f` under the extension's own short lock_timeout (`pg_runbook.lock_timeout`), so its
/// queries give up rather than queue behind, or hold up, a migration's lock.
pub fn with_lock_timeout<R>(f: impl FnOnce() -> R) -> R {
    let ms = crate::settings::LOCK_TIMEOUT_MS.get();
    with_settings(&[("lock_timeout", format!("{ms}ms"))], f)
}

/// An interval's length in milliseconds. Months count as 30 days, as PostgreSQL's own
/// `EXTRACT(epoch FROM interval)` does.
pub fn interval_ms(iv: &Interval) -> f64 {
    let days = iv.months() as f64 * 30.0 + iv.days() as f64;
    days * 86_400_000.0 + iv.micros() as f64 / 1000.0
}

/// Milliseconds as a short human duration: "850 ms", "12.5 s", "7.0 min", "2.5 h".
pub fn human_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms < 3_600_000.0 {
        format!("{:.1} min", ms / 60_000.0)
    } else {
        format!("{:.1} h", ms / 3_600_000.0)
    }
}

/// SQL condition: the relation `c` (an alias of pg_class) is not a member of an extension. Checks
/// of the application's schema leave out objects an extension manages, pg_runbook's own included.
pub const NOT_EXTENSION_MEMBER: &str = "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend ext_dep \
     WHERE ext_dep.classid = 'pg_catalog.pg_class'::regclass AND ext_dep.objid = c.oid \
       AND ext_dep.deptype = 'e')";

/// Runs `f` as the extension's catalog-reading functions run their queries: under
/// `pg_runbook.lock_timeout` and with JIT off. Catalog statistics are often stale (many tables
/// created since the last ANALYZE of pg_class), so estimates can cross `jit_above_cost` and
/// compiling a query that reads a few thousand catalog rows costs more than running it.
pub fn with_catalog_settings<R>(f: impl FnOnce() -> R) -> R {
    with_lock_timeout(|| with_settings(&[("jit", "off".to_string())], f))
}

/// Runs a statement that may write (a data-modifying CTE) and returns exactly one row, mapped.
pub fn select_mut_one<T>(
    sql: &str,
    args: &[DatumWithOid],
    map: impl Fn(&SpiHeapTupleData) -> T,
) -> T {
    Spi::connect_mut(|client| {
        let rows = spi(sql, client.update(sql, None, args));
        rows.into_iter()
            .next()
            .map(|row| map(&row))
            .unwrap_or_else(|| error::spi_failure(sql, "the query returned no row"))
    })
}
/// The extension's schema (quoted), or `None` while pg_runbook is not created in this database.
/// For the background worker, which must wait for CREATE EXTENSION rather than fail.
pub fn ext_schema_if_installed() -> Option<String> {
    select(
        "SELECT n.nspname::text FROM pg_catalog.pg_extension e \
         JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
         WHERE e.extname = 'pg_runbook'",
        &[],
        |row| col::<String>(row, 1),
    )
    .into_iter()
    .flatten()
    .next()
    .map(|s| quote_ident(&s))
}

thread_local! {
    /// Plans prepared by `run_prepared`, by query text, kept for the life of the backend.
    static PLANS: std::cell::RefCell<std::collections::HashMap<String, &'static pgrx::spi::OwnedPreparedStatement>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Runs `sql` (which may write) through a plan prepared once per backend, and maps each row.
/// The plan is leaked on purpose: it lives as long as the backend, and a `&'static` reference
/// lets a query that re-enters pg_runbook (a cached query calling cache_get) use the map too.
pub fn run_prepared<T>(
    sql: &str,
    types: &[PgOid],
    args: &[DatumWithOid],
    map: impl Fn(&SpiHeapTupleData) -> T,
) -> Vec<T> {
    let cached = PLANS.with(|p| p.borrow().get(sql).copied());
    Spi::connect_mut(|client| {
        let plan = match cached {
            Some(plan) => plan,
            None => {
                let plan = spi(sql, client.prepare_mut(sql, types)).keep();
                let plan: &'static pgrx::spi::OwnedPreparedStatement = Box::leak(Box::new(plan));
                PLANS.with(|p| p.borrow_mut().insert(sql.to_string(), plan));
                plan
            }
        };
        let rows = spi(sql, client.update(plan, None, args));
        rows.map(|row| map(&row)).collect()
    })
}

/// Runs `f` in a subtransaction: an ERROR inside is rolled back and returned as its message
/// (what PL/pgSQL's EXCEPTION blocks do). As there, a cancel or statement timeout (57014) and an
/// assertion failure (P0004) are not swallowed: after the rollback they go on to the caller.
/// `f` must return owned values and hold no SPI client.
pub fn in_subtransaction<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, String> {
    use pgrx::pg_sys::panic::CaughtError;
    unsafe {
        let memory_context = pg_sys::CurrentMemoryContext;
        let resource_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        let outcome: Result<R, CaughtError> = PgTryBuilder::new(move || Ok(f()))
            .catch_others(Err)
            .catch_rust_panic(Err)
            .execute();
        match outcome {
            Ok(_) => pg_sys::ReleaseCurrentSubTransaction(),
            Err(_) => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(memory_context);
        pg_sys::CurrentResourceOwner = resource_owner;
        outcome.map_err(|e| {
            if passes_through(&e) {
                e.rethrow()
            }
            caught_message(&e)
        })
    }
}

/// Errors no subtransaction keeps to itself, as in PL/pgSQL's WHEN OTHERS.
fn passes_through(e: &pgrx::pg_sys::panic::CaughtError) -> bool {
    use pgrx::PgSqlErrorCode::{ERRCODE_ASSERT_FAILURE, ERRCODE_QUERY_CANCELED};
    use pgrx::pg_sys::panic::CaughtError;
    match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => {
            matches!(
                r.sql_error_code(),
                ERRCODE_QUERY_CANCELED | ERRCODE_ASSERT_FAILURE
            )
        }
        CaughtError::RustPanic { .. } => false,
    }
}

/// The message of a caught ERROR or panic.
pub fn caught_message(e: &pgrx::pg_sys::panic::CaughtError) -> String {
    use pgrx::pg_sys::panic::CaughtError;
    match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r.message().to_string(),
        CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
    }
}
