//! The one read-only query guard. `cached_query`, cache warming and `check_query_plan` run a
//! caller's query only through it.
//!
//! Two layers, because neither is enough alone:
//! - the text must be exactly one SELECT with nothing that writes or locks rows anywhere in its
//!   tree (checked on PostgreSQL's raw parse tree; nothing is executed);
//! - the query runs in a subtransaction that is read-only and always rolled back. PostgreSQL
//!   refuses `transaction_read_only = off` inside a subtransaction of a read-only transaction, so
//!   a function the query calls cannot switch it off; the rollback undoes whatever else the query
//!   did (settings, transaction-level locks, large objects). Session-level advisory locks survive
//!   a rollback: any the query took are released and the call fails.

use crate::{error, own_sql};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

/// The query text without trailing semicolons, or 22023 naming `arg` unless it is one SELECT (or
/// WITH ... SELECT, VALUES, a set operation) that writes and locks nothing.
pub fn checked_select(arg: &str, query: &str) -> String {
    let trimmed = query
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
        .to_string();
    if trimmed.is_empty() {
        error::invalid_argument(arg, "is empty");
    }
    let owned = trimmed.clone();
    // The raw parser raises on a syntax error; the subtransaction turns that into our 22023.
    match own_sql::in_subtransaction(move || refusal(&owned)) {
        Err(syntax) => error::invalid_argument(arg, syntax),
        Ok(Some(why)) => error::invalid_argument(arg, why),
        Ok(None) => trimmed,
    }
}

/// Why `query` is not one read-only SELECT, or None when it is.
fn refusal(query: &str) -> Option<String> {
    let Ok(text) = std::ffi::CString::new(query) else {
        return Some("contains a NUL byte".into());
    };
    // SAFETY: raw_parser reads the NUL-terminated text and returns a List of RawStmt in the
    // current memory context (or raises a syntax ERROR, caught by the caller).
    unsafe {
        let list = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        let stmts = pgrx::PgList::<pg_sys::RawStmt>::from_pg(list);
        if stmts.len() != 1 {
            return Some(format!(
                "must be exactly one statement, got {}",
                stmts.len()
            ));
        }
        let stmt = stmts
            .get_ptr(0)
            .map(|s| (*s).stmt)
            .unwrap_or(std::ptr::null_mut());
        if stmt.is_null() || (*stmt).type_ != pg_sys::NodeTag::T_SelectStmt {
            return Some("must be a read-only SELECT (or WITH ... SELECT)".into());
        }
        let mut found: Option<&'static str> = None;
        refuse_walker(stmt, &mut found as *mut _ as *mut std::ffi::c_void);
        found.map(|what| format!("{what} is not allowed: must be a read-only SELECT"))
    }
}

/// Walks the whole raw tree (subqueries, CTEs, sublinks, set operations) for anything that
/// writes or locks rows; stops at the first.
// SAFETY: called only by raw_expression_tree_walker (below and in `refusal`), with a node of a
// raw parse tree or NULL and the context pointer `refusal` passed.
#[pg_guard]
unsafe extern "C-unwind" fn refuse_walker(
    node: *mut pg_sys::Node,
    context: *mut std::ffi::c_void,
) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: context is the `Option<&str>` that `refusal` passed; node is a raw parse node.
    let found = unsafe { &mut *(context as *mut Option<&'static str>) };
    // SAFETY: node is a non-NULL raw parse node (checked above); every node starts with its tag.
    let tag = unsafe { (*node).type_ };
    match tag {
        pg_sys::NodeTag::T_InsertStmt => *found = Some("INSERT"),
        pg_sys::NodeTag::T_UpdateStmt => *found = Some("UPDATE"),
        pg_sys::NodeTag::T_DeleteStmt => *found = Some("DELETE"),
        pg_sys::NodeTag::T_MergeStmt => *found = Some("MERGE"),
        pg_sys::NodeTag::T_SelectStmt => {
            let select = node as *mut pg_sys::SelectStmt;
            // SAFETY: the tag says this node is a SelectStmt.
            if unsafe { !(*select).intoClause.is_null() } {
                *found = Some("SELECT ... INTO");
            } else if unsafe { !(*select).lockingClause.is_null() } {
                *found = Some("FOR UPDATE/SHARE");
            }
        }
        _ => {}
    }
    if found.is_some() {
        return true;
    }
    // SAFETY: the walker is called back with this function and the same context.
    unsafe { pg_sys::raw_expression_tree_walker(node, Some(refuse_walker), context) }
}

/// Runs `f` (which runs a query already passed by `checked_select`) read-only in a subtransaction
/// that is always rolled back; returns what `f` returned, which must be owned data that does not
/// point into memory of the subtransaction. An ERROR inside reaches the caller after the
/// rollback. A session-level advisory lock the query took is released and refused (22023 naming
/// `arg`).
// CaughtError is pgrx's; it lives only until the match below rethrows it.
#[allow(clippy::result_large_err)]
pub fn run_read_only<R>(arg: &str, f: impl FnOnce() -> R) -> R {
    let before = session_advisory_locks();
    // SAFETY: the subtransaction sequence of pgrx-setup.md: remember the memory context and
    // resource owner, begin, run under PgTry, roll back, restore both. XactReadOnly is restored
    // by the subtransaction's end to the value it had at its start.
    let outcome: Result<R, CaughtError> = unsafe {
        let memory_context = pg_sys::CurrentMemoryContext;
        let resource_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::XactReadOnly = true;
        let outcome = PgTryBuilder::new(std::panic::AssertUnwindSafe(move || Ok(f())))
            .catch_others(Err)
            .catch_rust_panic(Err)
            .execute();
        pg_sys::RollbackAndReleaseCurrentSubTransaction();
        pg_sys::MemoryContextSwitchTo(memory_context);
        pg_sys::CurrentResourceOwner = resource_owner;
        outcome
    };
    let leaked: Vec<AdvisoryLock> = session_advisory_locks()
        .into_iter()
        .filter(|l| !before.contains(l))
        .collect();
    for lock in &leaked {
        lock.release();
    }
    match outcome {
        Err(e) => e.rethrow(),
        Ok(_) if !leaked.is_empty() => error::invalid_argument(
            arg,
            "took a session-level advisory lock (released): must be a read-only SELECT without side effects",
        ),
        Ok(value) => value,
    }
}

/// One advisory lock this backend holds, as pg_locks shows it: the two 32-bit halves of its key.
#[derive(PartialEq)]
struct AdvisoryLock {
    classid: u32,
    objid: u32,
    two_keys: bool,
    shared: bool,
}

impl AdvisoryLock {
    /// Releases the lock, every time it was taken (pg_locks shows a lock once, however often
    /// it was taken; unlocking one that is not held would warn).
    fn release(&self) {
        let function = if self.shared {
            "pg_advisory_unlock_shared"
        } else {
            "pg_advisory_unlock"
        };
        let (sql, args) = if self.two_keys {
            (
                format!("SELECT pg_catalog.{function}($1, $2)"),
                vec![(self.classid as i32).into(), (self.objid as i32).into()],
            )
        } else {
            let key = ((self.classid as u64) << 32 | self.objid as u64) as i64;
            (
                format!("SELECT pg_catalog.{function}($1)"),
                vec![key.into()],
            )
        };
        for _ in 0..10_000 {
            if !session_advisory_locks().contains(self) {
                break;
            }
            own_sql::select(&sql, &args, |_| ());
        }
    }
}

/// The advisory locks this backend holds (session- and transaction-level alike).
fn session_advisory_locks() -> Vec<AdvisoryLock> {
    own_sql::select(
        "SELECT classid::pg_catalog.int8, objid::pg_catalog.int8, objsubid = 2, mode = 'ShareLock' \
         FROM pg_catalog.pg_locks \
         WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid() AND granted",
        &[],
        |r| AdvisoryLock {
            classid: own_sql::col::<i64>(r, 1).unwrap_or(0) as u32,
            objid: own_sql::col::<i64>(r, 2).unwrap_or(0) as u32,
            two_keys: own_sql::col::<bool>(r, 3).unwrap_or(false),
            shared: own_sql::col::<bool>(r, 4).unwrap_or(false),
        },
    )
}
