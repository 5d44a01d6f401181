//! The extension's errors: each kind of failure has one SQLSTATE, chosen here.
//!
//! Every path that user input reaches raises through these functions, so a bad argument is a
//! PostgreSQL ERROR with a proper SQLSTATE and a message naming the argument, never a Rust panic
//! (which PostgreSQL would report as XX000).

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::fmt::Display;

fn raise(code: PgSqlErrorCode, message: String, detail: Option<String>, hint: Option<String>) -> ! {
    let mut report = ErrorReport::new(code, message, "pg_runbook");
    if let Some(detail) = detail {
        report = report.set_detail(detail);
    }
    if let Some(hint) = hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// 22023 invalid_parameter_value, naming the argument.
pub fn invalid_argument(arg: &str, problem: impl Display) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        format!("invalid value for argument \"{arg}\": {problem}"),
        None,
        None,
    )
}

/// The value of an argument that may not be NULL; NULL raises 22023 naming it.
///
/// Functions take `Option<T>` for such arguments so that PostgreSQL calls them on NULL input (a
/// STRICT function would silently return NULL, and a deploy script would carry on).
pub fn required<T>(arg: &str, value: Option<T>) -> T {
    match value {
        Some(v) => v,
        None => raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("argument \"{arg}\" must not be NULL"),
            None,
            None,
        ),
    }
}

/// 42704 undefined_object: a named thing (a label, a migration, a setting) does not exist.
pub fn undefined_object(kind: &str, name: impl Display) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
        format!("{kind} \"{name}\" does not exist"),
        None,
        None,
    )
}

/// 54001 statement_too_complex, naming the argument.
pub fn too_complex(arg: &str, problem: impl Display) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_STATEMENT_TOO_COMPLEX,
        format!("invalid value for argument \"{arg}\": {problem}"),
        None,
        None,
    )
}

/// 42P01 undefined_table, naming the argument.
pub fn undefined_table(arg: &str, problem: impl Display) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
        format!("invalid value for argument \"{arg}\": {problem}"),
        None,
        None,
    )
}

/// 42501 insufficient_privilege.
pub fn insufficient_privilege(message: impl Display) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        message.to_string(),
        None,
        None,
    )
}

/// 55000 object_not_in_prerequisite_state, with a hint saying how to get there.
pub fn not_ready(message: impl Display, hint: impl Display) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        message.to_string(),
        None,
        Some(hint.to_string()),
    )
}

/// P0004 assert_failure: an `assert_*` function found failures. The message names every one, so a
/// migration run with `ON_ERROR_STOP` stops with the whole story on one line; the detail gives
/// what was observed for each.
pub fn assertion_failed(what: &str, names: &[String], details: &[String]) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_ASSERT_FAILURE,
        format!("{what} failed: {}", names.join(", ")),
        Some(details.join("\n")),
        None,
    )
}

/// An SPI call failed on the Rust side (a type mismatch between a query and the code reading it):
/// a bug in pg_runbook, reported with the query's purpose rather than a panic.
pub fn spi_failure(context: &str, err: impl Display) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("pg_runbook: {context}: {err}"),
        None,
        Some("this is a bug in pg_runbook; please report it".into()),
    )
}
