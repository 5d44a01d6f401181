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

/// The search_path every statement of the extension's own runs under: built-in functions,
/// operators and types come from pg_catalog, whatever an ordinary role has planted in `public` or
/// in its own temporary schema (pg_temp is searched for relations and types only, and last).
pub const OWN_SEARCH_PATH: &str = "pg_catalog, pg_temp";

/// Runs `f`, one or more of the extension's own statements, with `search_path` pinned to
/// [`OWN_SEARCH_PATH`] and `lock_timeout` at most `pg_runbook.lock_timeout`, then restores the
/// caller's values. Every helper below runs its statement through this; a statement that must
/// see the caller's search_path (the caller's own query) does not use these helpers.
/// Settings already in force are not set again, so nested and repeated calls cost two reads.
pub fn as_own_statement<R>(f: impl FnOnce() -> R) -> R {
    let mut settings: Vec<(&str, String)> = Vec::new();
    if !search_path_is_pinned() {
        settings.push(("search_path", OWN_SEARCH_PATH.to_string()));
    }
    let ours = crate::settings::LOCK_TIMEOUT_MS.get();
    // SAFETY: LockTimeout is the backend-local variable behind the lock_timeout setting.
    let current = unsafe { pg_sys::LockTimeout };
    if ours > 0 && (current == 0 || current > ours) {
        settings.push(("lock_timeout", format!("{ours}ms")));
    }
    if settings.is_empty() {
        f()
    } else {
        with_settings(&settings, f)
    }
}

fn search_path_is_pinned() -> bool {
    // SAFETY: namespace_search_path is the backend-local string behind the search_path setting,
    // NUL-terminated or NULL; it is only read here.
    unsafe {
        let current = pg_sys::namespace_search_path;
        !current.is_null()
            && std::ffi::CStr::from_ptr(current).to_bytes() == OWN_SEARCH_PATH.as_bytes()
    }
}

/// Runs a read-only query and maps each row.
pub fn select<T>(sql: &str, args: &[DatumWithOid], map: impl Fn(&SpiHeapTupleData) -> T) -> Vec<T> {
    as_own_statement(|| {
        Spi::connect(|client| {
            let rows = spi(sql, client.select(sql, None, args));
            rows.map(|row| map(&row)).collect()
        })
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
    as_own_statement(|| Spi::connect_mut(|client| spi(sql, client.update(sql, None, args)).len()))
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
    // SAFETY: a new GUC nest level, popped (and its settings undone) by AtEOXact_GUC below.
    let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
    for (name, value) in settings {
        set_option(name, value, pg_sys::GucAction::GUC_ACTION_SAVE);
    }
    let result = f();
    // SAFETY: pops the level pushed above.
    unsafe { pg_sys::AtEOXact_GUC(true, nest_level) };
    result
}

/// Sets `name` to `value` until the end of the current transaction, as `SET LOCAL` does. Not
/// through SQL: a `set_config(..., true)` run by the helpers above would end with their statement.
pub fn set_local(name: &str, value: &str) {
    set_option(name, value, pg_sys::GucAction::GUC_ACTION_LOCAL);
}

/// Sets `name` to `value` for the rest of the session, as `SET` does (for a worker's own settings).
pub fn set_session(name: &str, value: &str) {
    set_option(name, value, pg_sys::GucAction::GUC_ACTION_SET);
}

fn set_option(name: &str, value: &str, action: pg_sys::GucAction::Type) {
    let name = CString::new(name).expect("setting names have no NUL");
    let value = CString::new(value).expect("setting values have no NUL");
    // SAFETY: both strings are NUL-terminated and live for the call; set_config_option copies them.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            0,
            false,
        );
    }
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
    as_own_statement(|| {
        Spi::connect_mut(|client| {
            let rows = spi(sql, client.update(sql, None, args));
            rows.into_iter()
                .next()
                .map(|row| map(&row))
                .unwrap_or_else(|| error::spi_failure(sql, "the query returned no row"))
        })
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
    as_own_statement(|| {
        Spi::connect_mut(|client| {
            let plan = match cached {
                Some(plan) => plan,
                None => {
                    let plan = spi(sql, client.prepare_mut(sql, types)).keep();
                    let plan: &'static pgrx::spi::OwnedPreparedStatement =
                        Box::leak(Box::new(plan));
                    PLANS.with(|p| p.borrow_mut().insert(sql.to_string(), plan));
                    plan
                }
            };
            let rows = spi(sql, client.update(plan, None, args));
            rows.map(|row| map(&row)).collect()
        })
    })
}

/// Runs `f` as the extension's owner, as a SECURITY DEFINER function would, and back as the
/// caller after it. For the statements that write the extension's own tables on a caller's
/// behalf (cache entries, log rows): those are fully qualified and built from no caller text.
pub fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    as_role(extension_owner(), false, f)
}

/// Runs `f` as `role`, and back as the current user after it. `restricted` adds
/// SECURITY_RESTRICTED_OPERATION (as REFRESH MATERIALIZED VIEW and maintenance commands do): code
/// run for another role can then not change session state that outlives it. An ERROR inside
/// leaves the switch back to the (sub)transaction abort, which restores the user.
pub fn as_role<R>(role: pg_sys::Oid, restricted: bool, f: impl FnOnce() -> R) -> R {
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    let mut switched = pg_sys::SECURITY_LOCAL_USERID_CHANGE as std::ffi::c_int;
    if restricted {
        switched |= pg_sys::SECURITY_RESTRICTED_OPERATION as std::ffi::c_int;
    }
    // SAFETY: Get/SetUserIdAndSecContext only read and write backend-local state; the previous
    // user and context are put back below, and by the transaction abort on an ERROR.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(role, context | switched);
    }
    let result = f();
    // SAFETY: as above.
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    result
}

/// The role that owns the extension (its objects and tables).
pub fn extension_owner() -> pg_sys::Oid {
    run_prepared(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_runbook'",
        &[],
        &[],
        |r| col::<pg_sys::Oid>(r, 1),
    )
    .into_iter()
    .flatten()
    .next()
    .unwrap_or_else(|| {
        error::not_ready(
            "extension \"pg_runbook\" is not installed in this database",
            "run CREATE EXTENSION pg_runbook",
        )
    })
}

/// Runs `f` in a subtransaction: an ERROR inside is rolled back and returned as its message
/// (what PL/pgSQL's EXCEPTION blocks do). As there, a cancel or statement timeout (57014) and an
/// assertion failure (P0004) are not swallowed: after the rollback they go on to the caller.
/// `f` must return owned values and hold no SPI client.
// CaughtError is pgrx's; it lives only until the match below turns it into a message.
#[allow(clippy::result_large_err)]
pub fn in_subtransaction<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, String> {
    use pgrx::pg_sys::panic::CaughtError;
    // SAFETY: the subtransaction sequence of pgrx-setup.md: remember the memory context and
    // resource owner, begin, run `f` under PgTry (which catches the ERROR longjmp and any panic),
    // release or roll back, then restore both, which the subtransaction's end does not do.
    // Nothing allocated inside is used afterwards: `f` returns owned values.
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

/// A `regclass` argument, taken as its OID and checked before use: PostgreSQL passes any OID as a
/// regclass (`0::oid::regclass`), and opening a relation that does not exist is an internal error.
pub struct Regclass(pg_sys::Oid);

impl Regclass {
    /// The relation's OID, or 42P01 naming `arg` when no relation has it.
    pub fn oid(&self, arg: &str) -> pg_sys::Oid {
        // SAFETY: a syscache lookup by OID; it only reads the catalog.
        let exists = unsafe {
            pg_sys::SearchSysCacheExists(
                pg_sys::SysCacheIdentifier::RELOID as _,
                self.0.into(),
                pg_sys::Datum::from(0),
                pg_sys::Datum::from(0),
                pg_sys::Datum::from(0),
            )
        };
        if !exists {
            error::undefined_table(arg, format!("no relation has OID {}", self.0.to_u32()));
        }
        self.0
    }

    /// The relation, opened without a lock (as pgrx opens a `PgRelation` argument).
    pub fn relation(&self, arg: &str) -> pgrx::PgRelation {
        let oid = self.oid(arg);
        // SAFETY: the relation exists (checked above).
        unsafe { pgrx::PgRelation::open(oid) }
    }
}

impl FromDatum for Regclass {
    // SAFETY: FromDatum's contract (the datum is of the declared type); a regclass datum is an
    // OID by value, read here without dereferencing anything.
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        (!is_null).then(|| Regclass(pg_sys::Oid::from(datum.value() as u32)))
    }
}

impl IntoDatum for Regclass {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0.into())
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::REGCLASSOID
    }
}

// SAFETY: the argument is declared regclass in SQL: its datum is an OID; NULL goes through
// `unbox_nullable_arg`'s default.
unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for Regclass {
    // SAFETY: ArgAbi's contract: pgrx calls this only for an argument of this function, which
    // is declared regclass.
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        // SAFETY: as above.
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| error::spi_failure("a regclass argument", "NULL"))
    }
}

pgrx::impl_sql_translatable!(Regclass, "regclass");
