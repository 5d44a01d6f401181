//! Migration safety before and during the deploy: `lint_migration` / `assert_migration_lint` judge
//! each statement of a migration by the lock it takes and the table it touches (rules.rs),
//! `check_migration_preconditions` counts the rows that would make a statement fail
//! (preconditions.rs), and `run_ddl` (sql/lint.sql, helpers in run_ddl.rs) runs one DDL statement
//! under a short lock_timeout with retries.
//!
//! The migration is parsed with PostgreSQL's own raw parser and never executed here. Table names
//! in it are resolved as PostgreSQL would resolve them when the caller runs the migration: through
//! the caller's search_path (it is the caller's migration). The extension's own catalog queries are
//! pg_catalog-qualified.

mod bounds;
mod preconditions;
mod rules;
mod run_ddl;
mod tree;

use crate::error;
use crate::own_sql::{self, col, quote_ident};
use crate::settings;
use pgrx::prelude::*;
use runbook_core::lint::{self as lc, LockMode, TableState, Work};
use runbook_core::status::Status;
use std::ffi::{CStr, CString, c_char};

pgrx::extension_sql_file!(
    "../../sql/lint.sql",
    name = "lint",
    requires = [
        lint_migration,
        assert_migration_lint,
        check_migration_preconditions,
        run_ddl_statement_check,
        run_ddl_blockers,
        run_ddl_log_attempt,
    ]
);

/// One statement of the migration: its number (1-based), its text, and its raw parse tree.
pub struct Statement {
    pub number: i32,
    pub text: String,
    pub node: *mut pg_sys::Node,
}

/// The migration's statements, or PostgreSQL's own syntax error.
pub fn parse(sql: &str, arg: &str) -> Result<Vec<Statement>, String> {
    let csql =
        CString::new(sql).unwrap_or_else(|_| error::invalid_argument(arg, "contains a NUL byte"));
    // SAFETY: raw_parser only reads the string; its ERROR (a syntax error) is caught and rolled
    // back by the subtransaction. The list is allocated in the function's memory context, which
    // the subtransaction leaves current, so it outlives the subtransaction.
    let list = own_sql::in_subtransaction(move || unsafe {
        pg_sys::raw_parser(csql.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT) as usize
    })?;
    let mut out = Vec::new();
    // SAFETY: a List of RawStmt, as raw_parser documents.
    let stmts = unsafe { pgrx::PgList::<pg_sys::RawStmt>::from_pg(list as *mut pg_sys::List) };
    for (i, raw) in stmts.iter_ptr().enumerate() {
        // SAFETY: each element is a RawStmt whose location and length index into `sql` (0 length:
        // the statement runs to the end of the string).
        let (node, start, len) = unsafe { ((*raw).stmt, (*raw).stmt_location, (*raw).stmt_len) };
        let start = start.max(0) as usize;
        let end = if len == 0 {
            sql.len()
        } else {
            start + len as usize
        };
        out.push(Statement {
            number: i as i32 + 1,
            text: lc::strip_leading_comments(sql.get(start..end).unwrap_or(""))
                .trim_end()
                .to_string(),
            node,
        });
    }
    Ok(out)
}

/// A table a statement touches, as the catalog (or the migration) knows it.
#[derive(Clone)]
pub struct Target {
    pub oid: Option<pg_sys::Oid>,
    /// Schema-qualified and quoted as needed, as the catalog spells it; as written when the table
    /// is not in the catalog.
    pub name: String,
    /// The table's own name, unquoted (constraint names are made from it).
    pub relname: String,
    pub state: TableState,
    pub partitioned: bool,
}

/// A C string as Rust text ('' for NULL).
pub fn text_of(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the parser's strings are NUL-terminated.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The strings of a List of String nodes (a qualified name, a column list). Any other node (the
/// `*` of `t.*` is an A_Star) is left out rather than read as a String.
pub fn string_list(list: *mut pg_sys::List) -> Vec<String> {
    let items = tree::list::<pg_sys::Node>(list);
    items
        .iter_ptr()
        .filter_map(tree::cast::<pg_sys::String>)
        .map(|s| text_of(s.sval))
        .collect()
}

/// A RangeVar as written, quoted: `"Sales".orders`.
pub fn written_name(rv: *const pg_sys::RangeVar) -> String {
    let (schema, rel) = (
        text_of(tree::node(rv).schemaname),
        text_of(tree::node(rv).relname),
    );
    if schema.is_empty() {
        quote_ident(&rel)
    } else {
        format!("{}.{}", quote_ident(&schema), quote_ident(&rel))
    }
}

/// The relation a RangeVar names, through the caller's search_path, without locking it.
pub fn relation_oid(rv: *const pg_sys::RangeVar) -> Option<pg_sys::Oid> {
    // SAFETY: NoLock and RVR_MISSING_OK: a lookup only; a missing relation or schema is
    // InvalidOid, not an ERROR.
    let oid = unsafe {
        pg_sys::RangeVarGetRelidExtended(
            rv,
            pg_sys::NoLock as i32,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// The catalog's view of a relation: its name, whether it is partitioned, its heap bytes and its
/// estimated rows (a partitioned table: the sums over its leaf partitions; rows unknown when a
/// non-empty leaf was never analyzed).
pub fn describe(oid: pg_sys::Oid) -> Target {
    let (name, relname, partitioned, bytes, rows) = own_sql::select_one(
        "WITH leaves AS ( \
           SELECT l.oid, l.reltuples FROM pg_catalog.pg_class l \
           WHERE (l.oid OPERATOR(pg_catalog.=) $1 AND l.relkind OPERATOR(pg_catalog.<>) 'p') \
              OR l.oid OPERATOR(pg_catalog.=) ANY (SELECT t.relid FROM pg_catalog.pg_partition_tree($1) t WHERE t.isleaf)) \
         SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), c.relname::pg_catalog.text, \
                c.relkind OPERATOR(pg_catalog.=) 'p', \
                COALESCE((SELECT pg_catalog.sum(pg_catalog.pg_table_size(l.oid))::bigint FROM leaves l), 0), \
                (SELECT CASE WHEN pg_catalog.bool_or(l.reltuples OPERATOR(pg_catalog.<) 0 \
                                  AND pg_catalog.pg_table_size(l.oid) OPERATOR(pg_catalog.>) 0) THEN NULL \
                             ELSE pg_catalog.sum(GREATEST(l.reltuples, 0))::bigint END FROM leaves l) \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE c.oid OPERATOR(pg_catalog.=) $1",
        &[oid.into()],
        |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<String>(r, 2).unwrap_or_default(),
                col::<bool>(r, 3).unwrap_or(false),
                col::<i64>(r, 4).unwrap_or(0),
                col::<i64>(r, 5),
            )
        },
    );
    Target {
        oid: Some(oid),
        name,
        relname,
        state: TableState::Existing { bytes, rows },
        partitioned,
    }
}

/// The table an index belongs to.
pub fn index_table(index: pg_sys::Oid) -> Option<pg_sys::Oid> {
    own_sql::select(
        "SELECT indrelid FROM pg_catalog.pg_index WHERE indexrelid OPERATOR(pg_catalog.=) $1",
        &[index.into()],
        |r| col::<pg_sys::Oid>(r, 1),
    )
    .into_iter()
    .flatten()
    .next()
}

/// The name of a relation as the catalog spells it, schema-qualified and quoted.
pub fn relation_name(oid: pg_sys::Oid) -> String {
    own_sql::select_one(
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE c.oid OPERATOR(pg_catalog.=) $1",
        &[oid.into()],
        |r| col::<String>(r, 1).unwrap_or_default(),
    )
}

/// One row of lint_migration's result.
pub struct Hit {
    pub rule: &'static str,
    pub status: Status,
    pub lock: Option<LockMode>,
    pub target: Option<Target>,
    pub work: Work,
    pub safe_form: Option<String>,
    pub detail: String,
}

type LintRow = (
    Option<i32>,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<f64>,
    Option<String>,
    String,
);

/// The thresholds: the arguments when given, else the settings.
fn limits(warn_rows: Option<i64>, fail_rows: Option<i64>) -> lc::Limits {
    let arg = |name: &str, v: Option<i64>, setting: i32| match v {
        Some(n) if n < 0 => error::invalid_argument(name, format!("{n} is negative")),
        Some(n) => n,
        None => setting as i64,
    };
    lc::Limits {
        warn_rows: arg("warn_rows", warn_rows, settings::LINT_WARN_ROWS.get()),
        fail_rows: arg("fail_rows", fail_rows, settings::LINT_FAIL_ROWS.get()),
        scan_mb_per_s: settings::LINT_SCAN_RATE_MB.get() as f64,
    }
}

fn row(stmt: Option<&Statement>, hit: Hit, limits: &lc::Limits) -> LintRow {
    let (bytes, rows) = match hit.target.as_ref().map(|t| &t.state) {
        Some(TableState::Existing { bytes, rows }) => (Some(*bytes), *rows),
        Some(TableState::New) => (Some(0), Some(0)),
        _ => (None, None),
    };
    let hold = match (&hit.target, hit.lock) {
        (Some(t), Some(_)) => lc::lock_hold_ms(hit.work, &t.state, limits).map(|ms| ms.round()),
        _ => None,
    };
    (
        stmt.map(|s| s.number),
        stmt.map(|s| lc::first_line(&s.text)),
        hit.rule.to_string(),
        hit.status.as_str().to_string(),
        hit.lock.map(|l| l.as_str().to_string()),
        hit.target.as_ref().map(|t| t.name.clone()),
        hit.lock.map(|_| hit.work.as_str().to_string()),
        bytes,
        rows,
        hold,
        hit.safe_form,
        hit.detail,
    )
}

fn lint(sql: Option<&str>, limits: lc::Limits) -> Vec<LintRow> {
    let sql = error::required("sql", sql);
    own_sql::with_catalog_settings(|| match parse(sql, "sql") {
        Err(message) => vec![row(
            None,
            Hit {
                rule: "syntax_error",
                status: Status::Fail,
                lock: None,
                target: None,
                work: Work::None,
                safe_form: None,
                detail: message,
            },
            &limits,
        )],
        Ok(stmts) => {
            let mut session = rules::Session::new(limits);
            let mut out = Vec::new();
            for stmt in &stmts {
                for hit in session.judge(stmt) {
                    out.push(row(Some(stmt), hit, &limits));
                }
            }
            out
        }
    })
}

/// lint_migration() and assert_migration_lint() take the same arguments and return the same rows,
/// which pgrx needs spelled out in each signature: this macro writes the signature once.
macro_rules! lint_function {
    ($(#[$attr:meta])* fn $name:ident(|$rows:ident| $body:expr)) => {
        $(#[$attr])*
        #[allow(clippy::type_complexity)]
        #[pg_extern(volatile)]
        fn $name(
            sql: Option<&str>,
            warn_rows: default!(Option<i64>, "NULL"),
            fail_rows: default!(Option<i64>, "NULL"),
        ) -> TableIterator<
            'static,
            (
                name!(statement, Option<i32>),
                name!(first_line, Option<String>),
                name!(rule, String),
                name!(status, String),
                name!(lock_mode, Option<String>),
                name!(lock_on, Option<String>),
                name!(table_work, Option<String>),
                name!(table_bytes, Option<i64>),
                name!(estimated_rows, Option<i64>),
                name!(lock_hold_ms, Option<f64>),
                name!(safe_form, Option<String>),
                name!(detail, String),
            ),
        > {
            let $rows = lint(sql, limits(warn_rows, fail_rows));
            $body
        }
    };
}

lint_function! {
    /// Judges each statement of a migration (the text of a migration file) before it runs: the lock
    /// it takes and on what, whether it rewrites or scans the table, the table's size and estimated
    /// rows from the catalog, how long the lock is held (estimated from `pg_runbook.lint_scan_rate`),
    /// and the safe form to use instead. PASS on a new or empty table, WARN from `warn_rows`
    /// (default `pg_runbook.lint_warn_rows`), FAIL from `fail_rows` (`pg_runbook.lint_fail_rows`). Nothing is executed; a
    /// statement the parser refuses is one `syntax_error` row with PostgreSQL's message. Table names
    /// resolve through the caller's search_path. Callable by runbook_reader.
    fn lint_migration(|rows| TableIterator::new(rows))
}

lint_function! {
    /// lint_migration(), raising P0004 naming every FAIL: a migration file run with
    /// `psql -v ON_ERROR_STOP=1` stops before its first statement. Callable by runbook_reader.
    fn assert_migration_lint(|rows| {
        let failing: Vec<&LintRow> = rows.iter().filter(|r| r.3 == "FAIL").collect();
        if !failing.is_empty() {
            let at = |r: &LintRow| {
                let on = r.5.as_ref().map(|t| format!(" on {t}")).unwrap_or_default();
                match r.0 {
                    Some(n) => format!("statement {n} {}{on}", r.2),
                    None => r.2.clone(),
                }
            };
            let names: Vec<String> = failing.iter().map(|r| at(r)).collect();
            let details: Vec<String> = failing
                .iter()
                .map(|r| format!("{}: {}", at(r), r.11))
                .collect();
            error::assertion_failed("migration lint", &names, &details);
        }
        TableIterator::new(rows)
    })
}
