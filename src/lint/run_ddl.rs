//! What the `run_ddl` procedure (sql/lint.sql) needs from Rust: checking that its statement is one
//! DDL statement it can run, naming the sessions that blocked an attempt, and writing the attempt
//! log. The procedure itself is PL/pgSQL because only a procedure can COMMIT between attempts.

use super::{Statement, parse, rules::Session};
use crate::error;
use crate::own_sql::{self, col};
use crate::settings;
use pgrx::prelude::*;
use runbook_core::lint::{Limits, LockMode};

/// Why `stmt` is not a DDL statement run_ddl can run, or None.
fn refusal(stmt: &Statement) -> Option<String> {
    use pg_sys::NodeTag::*;
    // SAFETY: each cast follows a check of the node's tag.
    unsafe {
        let tag = (*stmt.node).type_;
        let concurrent = match tag {
            T_IndexStmt => (*stmt.node.cast::<pg_sys::IndexStmt>()).concurrent,
            T_DropStmt => (*stmt.node.cast::<pg_sys::DropStmt>()).concurrent,
            T_ReindexStmt => stmt.text.to_ascii_lowercase().contains("concurrently"),
            T_AlterTableStmt => stmt.text.to_ascii_lowercase().contains("concurrently"),
            _ => false,
        };
        if concurrent {
            return Some(
                "a CONCURRENTLY statement cannot run inside a procedure; run it on its own from psql, after SET lock_timeout".into(),
            );
        }
        match tag {
            T_SelectStmt | T_InsertStmt | T_UpdateStmt | T_DeleteStmt | T_MergeStmt => {
                Some("it is not DDL: run_ddl runs schema changes only".into())
            }
            T_TransactionStmt | T_VariableSetStmt | T_VariableShowStmt | T_DiscardStmt
            | T_CallStmt | T_DoStmt | T_VacuumStmt | T_CreatedbStmt | T_DropdbStmt
            | T_CopyStmt | T_ExplainStmt => Some(
                "it is not a DDL statement run_ddl can run (transaction control, settings, CALL, DO, VACUUM, COPY and database commands are refused)".into(),
            ),
            _ => None,
        }
    }
}

fn one_ddl_statement(sql: Option<&str>) -> Statement {
    let sql = error::required("sql", sql);
    let mut stmts = match parse(sql, "sql") {
        Ok(s) => s,
        Err(message) => error::invalid_argument("sql", message),
    };
    if stmts.len() != 1 {
        error::invalid_argument(
            "sql",
            format!(
                "it holds {} statements; give exactly one DDL statement",
                stmts.len()
            ),
        );
    }
    let stmt = stmts.remove(0);
    if let Some(why) = refusal(&stmt) {
        error::invalid_argument("sql", why);
    }
    stmt
}

/// Checks run_ddl's arguments: `sql` must be exactly one DDL statement that can run inside a
/// procedure; lock_timeout positive, retries zero or more, backoff zero or more. Raises 22023
/// naming the argument. For run_ddl; callable by runbook_operator.
#[pg_extern(volatile)]
fn run_ddl_statement_check(
    sql: Option<&str>,
    lock_timeout: Option<Interval>,
    retries: Option<i32>,
    backoff: Option<Interval>,
) -> bool {
    one_ddl_statement(sql);
    let timeout = error::required("lock_timeout", lock_timeout);
    if own_sql::interval_ms(&timeout) <= 0.0 {
        error::invalid_argument("lock_timeout", "must be positive (0 would wait for ever)");
    }
    if error::required("retries", retries) < 0 {
        error::invalid_argument("retries", "must be 0 or more");
    }
    if own_sql::interval_ms(&error::required("backoff", backoff)) < 0.0 {
        error::invalid_argument("backoff", "must not be negative");
    }
    // SAFETY: reads the transaction state.
    if unsafe { pg_sys::IsTransactionBlock() } {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
            "run_ddl cannot run inside a transaction block",
            "run_ddl_statement_check",
        )
        .set_hint("it commits between attempts: CALL it on its own, outside BEGIN ... COMMIT")
        .report(PgLogLevel::ERROR);
    }
    true
}

/// The tables `stmt` locks and in which mode, as the lint rules see them.
fn wanted_locks(stmt: &Statement) -> Vec<(pg_sys::Oid, LockMode)> {
    let limits = Limits {
        warn_rows: 0,
        fail_rows: 0,
        scan_mb_per_s: 1.0,
    };
    let mut wanted = Vec::new();
    for hit in Session::new(limits).judge(stmt) {
        if let (Some(lock), Some(oid)) = (hit.lock, hit.target.and_then(|t| t.oid)) {
            wanted.push((oid, lock));
        }
    }
    wanted
}

/// The other sessions holding, or queued for, a lock on a table `sql` locks in a mode that
/// conflicts with the one it needs: what pg_blocking_pids() reported while the attempt waited
/// (the wait is over when run_ddl can look, so the same conflict test is applied to pg_locks).
/// One row: the pids and a description of each (user, application, state, since when, query).
/// For run_ddl; callable by runbook_operator.
#[pg_extern(volatile)]
fn run_ddl_blockers(
    sql: Option<&str>,
) -> TableIterator<'static, (name!(blocked_by, Vec<i32>), name!(blockers, String))> {
    let stmt = one_ddl_statement(sql);
    let wanted = own_sql::with_catalog_settings(|| wanted_locks(&stmt));
    let oids: Vec<pg_sys::Oid> = wanted.iter().map(|w| w.0).collect();
    let held = own_sql::with_catalog_settings(|| {
        own_sql::select(
            "SELECT l.pid, l.relation, l.mode, pg_catalog.format('pid %s (%s, %s, %s since %s: %s)', l.pid, \
                    COALESCE(a.usename::pg_catalog.text, '?'), COALESCE(NULLIF(a.application_name, ''), '-'), \
                    COALESCE(a.state, '?'), \
                    pg_catalog.to_char(COALESCE(a.xact_start, a.backend_start), 'HH24:MI:SS'), \
                    pg_catalog.left(pg_catalog.regexp_replace(COALESCE(a.query, ''), '\\s+', ' ', 'g'), 80)) \
             FROM pg_catalog.pg_locks l \
             LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid \
             WHERE l.locktype OPERATOR(pg_catalog.=) 'relation' \
               AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d \
                                                       WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) \
               AND l.relation OPERATOR(pg_catalog.=) ANY ($1) \
               AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() \
             ORDER BY l.pid",
            &[oids.into()],
            |r| {
                (
                    col::<i32>(r, 1).unwrap_or(0),
                    col::<pg_sys::Oid>(r, 2).unwrap_or(pg_sys::InvalidOid),
                    col::<String>(r, 3).unwrap_or_default(),
                    col::<String>(r, 4).unwrap_or_default(),
                )
            },
        )
    });
    let mut pids: Vec<i32> = Vec::new();
    let mut about: Vec<String> = Vec::new();
    for (pid, rel, mode, text) in held {
        let conflicts = LockMode::parse(&mode).is_some_and(|m| {
            wanted
                .iter()
                .any(|(oid, w)| *oid == rel && w.conflicts_with(m))
        });
        if conflicts && !pids.contains(&pid) {
            pids.push(pid);
            about.push(text);
        }
    }
    let description = if about.is_empty() {
        "no conflicting lock is held now (the blocker finished, or the statement locks objects lint cannot name)".to_string()
    } else {
        about.join("; ")
    };
    TableIterator::once((pids, description))
}

/// The role that owns the extension: the attempt log is written as it, so a caller needs no
/// rights on the table.
fn extension_owner() -> pg_sys::Oid {
    own_sql::select_one(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_runbook'",
        &[],
        |r| col::<pg_sys::Oid>(r, 1).unwrap_or(pg_sys::InvalidOid),
    )
}

/// Records one attempt of run_ddl in ddl_attempt_log and prunes rows older than
/// `pg_runbook.ddl_log_retention`. The row's user is the session's current user, taken here, not
/// from the caller. The two statements are fixed SQL run as the extension's owner with the values
/// as parameters. For run_ddl; callable by runbook_operator.
#[pg_extern(volatile)]
fn run_ddl_log_attempt(
    statement: Option<&str>,
    attempt: Option<i32>,
    outcome: Option<&str>,
    elapsed_ms: Option<f64>,
    blocked_by: Option<Vec<i32>>,
    blockers: Option<&str>,
    error_message: Option<&str>,
) {
    let outcome = error::required("outcome", outcome);
    if !["done", "lock_timeout", "error"].contains(&outcome) {
        error::invalid_argument("outcome", "must be done, lock_timeout or error");
    }
    // SAFETY: GetUserId reads the backend's current user id, always set inside a transaction.
    let user = unsafe { pg_sys::GetUserId() };
    let owner = extension_owner();
    let table = own_sql::ext_object("ddl_attempt_log");
    let retention = settings::DDL_LOG_RETENTION_S.get();
    // As the owner for the two statements below, and back; an ERROR in between is cleaned up by
    // the transaction's abort, which restores the user.
    own_sql::as_role(owner, false, || {
        own_sql::with_lock_timeout(|| {
            own_sql::execute(
                &format!(
                    "INSERT INTO {table} (username, statement, attempt, outcome, elapsed_ms, blocked_by, blockers, error) \
                 VALUES ((SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) $1), \
                         $2, $3, $4, $5, $6, $7, $8)"
                ),
                &[
                    user.into(),
                    statement.into(),
                    attempt.into(),
                    outcome.into(),
                    elapsed_ms.into(),
                    blocked_by.into(),
                    blockers.into(),
                    error_message.into(),
                ],
            );
            if retention > 0 {
                own_sql::execute(
                    &format!(
                        "DELETE FROM {table} WHERE attempted_at OPERATOR(pg_catalog.<) \
                     (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))"
                    ),
                    &[(retention as f64).into()],
                );
            }
        })
    });
}
