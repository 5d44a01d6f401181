//! check_migration_preconditions: before a migration runs, counts the rows that would make its
//! statements fail: duplicates for a new unique index or constraint, NULLs for SET NOT NULL,
//! orphans for a new foreign key, rows violating a new CHECK, rows outside the bounds of a partition
//! being attached (bounds.rs).
//!
//! The counts read the caller's tables AS THE CALLER (no elevation), each under a row limit and a
//! time limit. The SQL is built from catalog names and column names out of the parse tree, every
//! one quoted; nothing of the migration's text is run, except a CHECK expression, and that only as
//! PostgreSQL itself deparses it after analysing it against the table (docs/lint.md says what that
//! allows).

use super::tree::node;
use super::{Statement, describe, parse, relation_oid, string_list, text_of};
use crate::backend;
use crate::error;
use crate::own_sql::{self, col, quote_ident};
use pgrx::prelude::*;
use runbook_core::lint::first_line;
use runbook_core::status::Status;

/// One count to make: which check, on what, and the query's FROM/WHERE part.
struct Count {
    check: &'static str,
    object: String,
    query: String,
    /// The statement adds the constraint NOT VALID: violations fail only its later VALIDATE.
    deferred: bool,
    what: &'static str,
}

type Row = (i32, String, String, String, String, Option<i64>, String);

fn columns_sql(cols: &[String]) -> String {
    cols.iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

fn not_null_sql(alias: &str, cols: &[String]) -> String {
    cols.iter()
        .map(|c| format!("{alias}.{} IS NOT NULL", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn duplicates(table: &str, cols: &[String], primary: bool, deferred: bool) -> Vec<Count> {
    let object = format!("{table} ({})", columns_sql(cols));
    let mut out = vec![Count {
        check: "unique_duplicates",
        object: object.clone(),
        query: format!(
            "SELECT 1 FROM {table} t WHERE {} GROUP BY {} HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1",
            not_null_sql("t", cols),
            columns_sql(cols)
        ),
        deferred,
        what: "duplicated key value(s)",
    }];
    if primary {
        out.push(nulls(table, cols, "primary key"));
    }
    out
}

fn nulls(table: &str, cols: &[String], why: &str) -> Count {
    let any_null = cols
        .iter()
        .map(|c| format!("t.{} IS NULL", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(" OR ");
    Count {
        check: "not_null_nulls",
        object: format!("{table} ({})", columns_sql(cols)),
        query: format!("SELECT 1 FROM {table} t WHERE {any_null}"),
        deferred: false,
        what: if why == "primary key" {
            "row(s) with a NULL key column"
        } else {
            "NULL(s)"
        },
    }
}

/// The columns of a table's primary key, for `REFERENCES t` without a column list.
fn primary_key(oid: pg_sys::Oid) -> Vec<String> {
    own_sql::select(
        "SELECT a.attname::pg_catalog.text FROM pg_catalog.pg_constraint con \
         CROSS JOIN LATERAL pg_catalog.unnest(con.conkey) WITH ORDINALITY k(attnum, n) \
         JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) con.conrelid AND a.attnum OPERATOR(pg_catalog.=) k.attnum \
         WHERE con.conrelid OPERATOR(pg_catalog.=) $1 AND con.contype OPERATOR(pg_catalog.=) 'p' ORDER BY k.n",
        &[oid.into()],
        |r| col::<String>(r, 1).unwrap_or_default(),
    )
}

fn orphans(table: &str, c: *mut pg_sys::Constraint) -> Option<Count> {
    let (fk, pk_rv, pk, deferred) = {
        let c = node(c);
        (
            string_list(c.fk_attrs),
            c.pktable,
            string_list(c.pk_attrs),
            c.skip_validation,
        )
    };
    let parent = relation_oid(pk_rv)?;
    let pk = if pk.is_empty() {
        primary_key(parent)
    } else {
        pk
    };
    if pk.len() != fk.len() || fk.is_empty() {
        return None;
    }
    let parent_name = describe(parent).name;
    let matches = fk
        .iter()
        .zip(&pk)
        .map(|(f, p)| format!("p.{} = t.{}", quote_ident(p), quote_ident(f)))
        .collect::<Vec<_>>()
        .join(" AND ");
    Some(Count {
        check: "foreign_key_orphans",
        object: format!("{table} ({}) -> {parent_name}", columns_sql(&fk)),
        query: format!(
            "SELECT 1 FROM {table} t WHERE {} AND NOT EXISTS (SELECT 1 FROM {parent_name} p WHERE {matches})",
            not_null_sql("t", &fk)
        ),
        deferred,
        what: "row(s) whose key has no match in the referenced table",
    })
}

/// A CHECK expression as PostgreSQL deparses it after analysing it against the table, as
/// ALTER TABLE ... ADD CHECK would (in a subtransaction: an unknown column is an answer).
fn deparsed_check(oid: pg_sys::Oid, expr: *mut pg_sys::Node) -> Result<String, String> {
    let expr = expr as usize;
    own_sql::with_lock_timeout(|| {
        // SAFETY: expr is a raw expression of the parse tree, which transformExpr reads into
        // new nodes. The table is opened with ACCESS SHARE (under the extension's lock_timeout,
        // an unknown OID is an ERROR) only to analyse the expression, and closed again; nothing
        // is executed here. An ERROR is rolled back by the subtransaction, which releases the
        // lock and the ParseState's memory.
        own_sql::in_subtransaction(move || unsafe {
            let rel = pg_sys::table_open(oid, pg_sys::AccessShareLock as i32);
            let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
            let item = pg_sys::addRangeTableEntryForRelation(
                pstate,
                rel,
                pg_sys::AccessShareLock as i32,
                std::ptr::null_mut(),
                false,
                true,
            );
            pg_sys::addNSItemToQuery(pstate, item, true, true, true);
            let node = pg_sys::transformExpr(
                pstate,
                expr as *mut pg_sys::Node,
                pg_sys::ParseExprKind::EXPR_KIND_CHECK_CONSTRAINT,
            );
            pg_sys::assign_expr_collations(pstate, node);
            let name = pg_sys::get_rel_name(oid);
            let text = text_of(pg_sys::deparse_expression(
                node,
                pg_sys::deparse_context_for(name, oid),
                false,
                false,
            ));
            pg_sys::free_parsestate(pstate);
            pg_sys::table_close(rel, pg_sys::NoLock as i32);
            text
        })
    })
}

fn violations(table: &str, oid: pg_sys::Oid, c: *mut pg_sys::Constraint) -> Result<Count, String> {
    let (raw, deferred) = (node(c).raw_expr, node(c).skip_validation);
    let expr = deparsed_check(oid, raw)?;
    Ok(Count {
        check: "check_violations",
        object: format!("{table} CHECK ({expr})"),
        query: format!("SELECT 1 FROM {table} t WHERE ({expr}) IS FALSE"),
        deferred,
        what: "row(s) violating the CHECK",
    })
}

/// Rows of a table being attached as a partition that its bounds would not accept.
fn out_of_bounds(
    parent: pg_sys::Oid,
    cmd: *mut pg_sys::PartitionCmd,
) -> Result<Count, (String, String)> {
    // The PartitionCmd of an ATTACH PARTITION.
    let (rv, bound) = (node(cmd).name, node(cmd).bound);
    let Some(part) = relation_oid(rv).map(describe) else {
        return Err((
            super::written_name(rv),
            "the partition is not in the catalog".into(),
        ));
    };
    let inside = super::bounds::inside(parent, bound).map_err(|e| (part.name.clone(), e))?;
    Ok(Count {
        check: "partition_out_of_bounds",
        object: format!("{} ({inside})", part.name),
        query: format!("SELECT 1 FROM {} t WHERE ({inside}) IS NOT TRUE", part.name),
        deferred: false,
        what: "row(s) outside the partition's bounds",
    })
}

/// The counts one statement needs, or a reason it cannot be counted.
fn counts(stmt: &Statement, created: &mut Vec<String>) -> Vec<Result<Count, (String, String)>> {
    let mut out = Vec::new();
    let table_of = |rv: *mut pg_sys::RangeVar, created: &Vec<String>| {
        let rel = text_of(node(rv).relname);
        if created.contains(&rel) {
            return None;
        }
        relation_oid(rv).map(|oid| (oid, describe(oid)))
    };
    // SAFETY: stmt.node and every pointer read from it are nodes and Lists of the live raw
    // parse tree (see tree.rs), read only; each cast follows a check of the node's tag, or of
    // the AlterTableCmd subtype that fixes what its `def` is.
    unsafe {
        match (*stmt.node).type_ {
            pg_sys::NodeTag::T_CreateStmt => {
                let rv = (*stmt.node.cast::<pg_sys::CreateStmt>()).relation;
                created.push(text_of((*rv).relname));
            }
            pg_sys::NodeTag::T_IndexStmt => {
                let i = stmt.node.cast::<pg_sys::IndexStmt>();
                if !(*i).unique {
                    return out;
                }
                let Some((_, t)) = table_of((*i).relation, created) else {
                    return out;
                };
                let elems = pgrx::PgList::<pg_sys::IndexElem>::from_pg((*i).indexParams);
                let cols: Vec<String> = elems.iter_ptr().map(|e| text_of((*e).name)).collect();
                if cols.iter().any(String::is_empty) || !(*i).whereClause.is_null() {
                    out.push(Err((
                        t.name,
                        "an expression or partial unique index is not counted".into(),
                    )));
                } else {
                    out.extend(duplicates(&t.name, &cols, false, false).into_iter().map(Ok));
                }
            }
            pg_sys::NodeTag::T_AlterTableStmt => {
                let a = stmt.node.cast::<pg_sys::AlterTableStmt>();
                let Some((oid, t)) = table_of((*a).relation, created) else {
                    return out;
                };
                let cmds = pgrx::PgList::<pg_sys::AlterTableCmd>::from_pg((*a).cmds);
                for cmd in cmds.iter_ptr() {
                    match (*cmd).subtype {
                        pg_sys::AlterTableType::AT_SetNotNull => {
                            out.push(Ok(nulls(&t.name, &[text_of((*cmd).name)], "not null")))
                        }
                        pg_sys::AlterTableType::AT_AddConstraint => {
                            let c = (*cmd).def.cast::<pg_sys::Constraint>();
                            match (*c).contype {
                                pg_sys::ConstrType::CONSTR_UNIQUE
                                | pg_sys::ConstrType::CONSTR_PRIMARY
                                    if (*c).indexname.is_null() =>
                                {
                                    let primary =
                                        (*c).contype == pg_sys::ConstrType::CONSTR_PRIMARY;
                                    let cols = string_list((*c).keys);
                                    out.extend(
                                        duplicates(&t.name, &cols, primary, false)
                                            .into_iter()
                                            .map(Ok),
                                    );
                                }
                                pg_sys::ConstrType::CONSTR_FOREIGN => {
                                    out.extend(orphans(&t.name, c).map(Ok))
                                }
                                pg_sys::ConstrType::CONSTR_CHECK => out.push(
                                    violations(&t.name, oid, c).map_err(|e| (t.name.clone(), e)),
                                ),
                                _ => {}
                            }
                        }
                        pg_sys::AlterTableType::AT_AttachPartition => {
                            out.push(out_of_bounds(oid, (*cmd).def.cast()))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// `SELECT count(*)` of at most `limit` rows of `query`, as the caller, with the statement
/// timeout armed for `timeout_ms` (or until the caller's own statement_timeout, if sooner). Our
/// timeout is turned into an ordinary ERROR inside the subtransaction, so the subtransaction's
/// rollback cleans up after it and the count becomes a WARN; the caller's own timeout and a
/// cancel go on to the caller.
fn bounded_count(query: &str, limit: i64, timeout_ms: i32) -> Result<i64, String> {
    let sql = format!("SELECT pg_catalog.count(*) FROM ({query} LIMIT {limit}) s");
    let callers_deadline = backend::statement_deadline();
    let remaining_ms = callers_deadline.map_or(i64::MAX, |deadline| {
        ((deadline - backend::now_micros()) / 1000).max(1)
    });
    let ours = (timeout_ms as i64) < remaining_ms;
    let delay = (timeout_ms as i64).min(remaining_ms) as i32;
    let outcome = own_sql::in_subtransaction(move || {
        PgTryBuilder::new(|| {
            backend::arm_statement_timeout(delay); // disarmed or restored below
            own_sql::select_one(&sql, &[], |r| col::<i64>(r, 1).unwrap_or(0))
        })
        .catch_when(PgSqlErrorCode::ERRCODE_QUERY_CANCELED, move |e| {
            use pgrx::pg_sys::panic::CaughtError;
            let timeout = matches!(&e, CaughtError::PostgresError(r) if r.message().contains("statement timeout"));
            if !(timeout && ours) {
                e.rethrow()
            }
            error::not_ready(
                format!("timed out after {timeout_ms} ms"),
                "raise the timeout argument, or count outside the deploy window",
            )
        })
        .execute()
    });
    backend::disarm_statement_timeout();
    if let Some(deadline) = callers_deadline {
        backend::arm_statement_timeout_at(deadline);
    }
    outcome
}

/// Before a migration runs: for each statement that can fail on the data already in a table,
/// the number of rows that would make it fail (a unique index or constraint: groups of duplicated
/// keys; SET NOT NULL and a primary key: NULLs; a foreign key: rows without a match; a CHECK: rows
/// violating it; ATTACH PARTITION: rows outside the bounds). Each count stops at `max_rows` and gives up after `timeout` (a WARN row), so it
/// never becomes the long query itself. The counts run as the caller, on the caller's tables;
/// a CHECK expression is evaluated (as PostgreSQL deparses it), so its functions run as the
/// caller. Callable by runbook_reader.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile)]
fn check_migration_preconditions(
    sql: Option<&str>,
    max_rows: default!(Option<i64>, 1000),
    timeout: default!(Option<Interval>, "'5s'"),
) -> TableIterator<
    'static,
    (
        name!(statement, i32),
        name!(first_line, String),
        name!(check, String),
        name!(status, String),
        name!(object, String),
        name!(violating_rows, Option<i64>),
        name!(detail, String),
    ),
> {
    let sql = error::required("sql", sql);
    let limit = error::required("max_rows", max_rows);
    if limit < 1 {
        error::invalid_argument("max_rows", "must be at least 1");
    }
    let timeout_ms = own_sql::interval_ms(&error::required("timeout", timeout));
    if !(1.0..=i32::MAX as f64).contains(&timeout_ms) {
        error::invalid_argument("timeout", "must be between 1 ms and 24 days");
    }
    let stmts = parse(sql, "sql").unwrap_or_else(|e| error::invalid_argument("sql", e));
    let mut rows: Vec<Row> = Vec::new();
    let mut created = Vec::new();
    for stmt in &stmts {
        let line = first_line(&stmt.text);
        for count in own_sql::with_catalog_settings(|| counts(stmt, &mut created)) {
            rows.push(match count {
                Err((object, why)) => (
                    stmt.number,
                    line.clone(),
                    "not_counted".into(),
                    "WARN".into(),
                    object,
                    None,
                    why,
                ),
                Ok(c) => judge(
                    stmt.number,
                    &line,
                    &c,
                    limit,
                    bounded_count(&c.query, limit, timeout_ms as i32),
                ),
            });
        }
    }
    TableIterator::new(rows)
}

fn judge(n: i32, line: &str, c: &Count, limit: i64, counted: Result<i64, String>) -> Row {
    let (status, rows, detail) = match counted {
        Err(message) => (
            Status::Warn,
            None,
            format!("could not be counted: {message}"),
        ),
        Ok(0) => (Status::Pass, Some(0), format!("no {}", c.what)),
        Ok(k) => {
            let at_least = if k >= limit { "at least " } else { "" };
            let when = if c.deferred {
                "its later VALIDATE CONSTRAINT will fail"
            } else {
                "the statement will fail"
            };
            let status = if c.deferred {
                Status::Warn
            } else {
                Status::Fail
            };
            (status, Some(k), format!("{at_least}{k} {}: {when}", c.what))
        }
    };
    (
        n,
        line.to_string(),
        c.check.to_string(),
        status.as_str().to_string(),
        c.object.clone(),
        rows,
        detail,
    )
}
