//! `check_query_plan`: runs one read-only query under EXPLAIN ANALYZE and says whether it used the
//! index a migration was meant to give it, and how long it took.

// pgrx needs each #[pg_extern] signature to spell out its row type (it does not resolve aliases).
#![allow(clippy::type_complexity)]

use crate::own_sql::{self, col, quote_ident};
use crate::policy::names::{self, Found};
use crate::{error, policy::query_guard};
use pgrx::Json;
use pgrx::prelude::*;
use runbook_core::explain;
use runbook_core::status::Status;
use serde_json::Value;

/// What an EXPLAIN (FORMAT JSON) plan says: indexes used (schema, or '' when the plan names
/// none, and name) and relations scanned sequentially (qualified, quoted), each once.
fn plan_summary(plan: &Value) -> (Vec<(String, String)>, Vec<String>) {
    let (mut indexes, mut seq_scans) = (Vec::new(), Vec::new());
    for scan in explain::scans(plan) {
        let schema = scan.schema.unwrap_or_default();
        if let Some(index) = scan.index {
            let entry = (schema.clone(), index);
            if !indexes.contains(&entry) {
                indexes.push(entry);
            }
        }
        if scan.node_type == "Seq Scan" {
            let relation = scan.relation.unwrap_or_default();
            let rel = format!("{}.{}", quote_ident(&schema), quote_ident(&relation));
            if !seq_scans.contains(&rel) {
                seq_scans.push(rel);
            }
        }
    }
    (indexes, seq_scans)
}

/// Whether the plan used the index `expected` or, for an index of a partitioned table, a
/// partition's copy of it (a plan scans the partitions' indexes, never the parent's). An index
/// without a schema (none named above it in the plan) is matched by name in any schema.
fn index_used(expected: pg_sys::Oid, used: &[(String, String)]) -> bool {
    let (schemas, indexes): (Vec<String>, Vec<String>) = used.iter().cloned().unzip();
    own_sql::select_one(
        "SELECT EXISTS (SELECT 1 FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[])) u(s, r) \
           JOIN pg_catalog.pg_class c ON c.relname OPERATOR(pg_catalog.=) u.r \
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
                AND (u.s OPERATOR(pg_catalog.=) '' OR n.nspname OPERATOR(pg_catalog.=) u.s) \
           WHERE c.oid OPERATOR(pg_catalog.=) $3 \
              OR $3 OPERATOR(pg_catalog.=) ANY (SELECT a.relid FROM pg_catalog.pg_partition_ancestors(c.oid) a))",
        &[schemas.into(), indexes.into(), expected.into()],
        |r| col::<bool>(r, 1).unwrap_or(false),
    )
}

/// Runs `EXPLAIN (ANALYZE, BUFFERS, VERBOSE, FORMAT JSON)` on one read-only query and reports its
/// planning and execution time, the indexes it used, whether it scanned a table sequentially, and
/// PASS/FAIL against `expect_index` and `max_ms`. Anything but one SELECT (or WITH ... SELECT)
/// is refused with 22023 before it runs; the query runs with the transaction read-only.
#[pg_extern(volatile)]
fn check_query_plan(
    query: Option<&str>,
    expect_index: default!(Option<&str>, "NULL"),
    max_ms: default!(Option<f64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(planning_ms, f64),
        name!(execution_ms, f64),
        name!(indexes_used, Vec<String>),
        name!(seq_scan, bool),
        name!(seq_scan_tables, Vec<String>),
        name!(detail, String),
    ),
> {
    let query = error::required("query", query);
    if query.trim().is_empty() {
        error::invalid_argument("query", "is empty");
    }
    // Resolved before the query runs, as the caller's search_path finds it (or as the catalog
    // spells it): a name that parses badly is 22023 before anything runs.
    let expected_index = expect_index.map(|e| (e, names::find_relation("expect_index", e, "i,I")));
    if let Some(ms) = max_ms.filter(|ms| !ms.is_finite() || *ms < 0.0) {
        error::invalid_argument(
            "max_ms",
            format!("{ms} is not a non-negative number of milliseconds"),
        );
    }
    let query = query_guard::checked_select("query", query);

    let explain = format!("EXPLAIN (ANALYZE, BUFFERS, VERBOSE, FORMAT JSON)\n{query}\n");
    let result = query_guard::run_read_only("query", || {
        // EXPLAIN ANALYZE is a utility statement: SPI runs it only in read-write mode. The
        // transaction itself is read-only here (query_guard).
        Spi::connect_mut(|client| {
            let rows = own_sql::spi("running EXPLAIN", client.update(&explain, None, &[]));
            rows.into_iter()
                .next()
                .and_then(|r| own_sql::col::<Json>(&r, 1))
                .map(|j| j.0)
        })
    });
    let result = result.unwrap_or(Value::Null);
    let top = result.get(0).cloned().unwrap_or(Value::Null);
    let planning_ms = top
        .get("Planning Time")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let execution_ms = top
        .get("Execution Time")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let (indexes, seq_scans) = top.get("Plan").map(plan_summary).unwrap_or_default();

    let mut failures = Vec::new();
    match &expected_index {
        Some((e, Found::Missing(close))) => failures.push(format!(
            "expected index {e} does not exist{}",
            Found::hint(close)
        )),
        Some((e, Found::Relation(oid))) if !index_used(*oid, &indexes) => {
            failures.push(format!("expected index {e} was not used"))
        }
        _ => {}
    }
    if let Some(max) = max_ms.filter(|max| execution_ms > *max) {
        failures.push(format!(
            "execution took {execution_ms:.3} ms, more than {max} ms"
        ));
    }
    let status = if failures.is_empty() {
        Status::Pass
    } else {
        Status::Fail
    };
    let mut detail = failures;
    if !seq_scans.is_empty() {
        detail.push(format!("sequential scan of {}", seq_scans.join(", ")));
    }
    let used: Vec<String> = indexes.iter().map(|(_, n)| quote_ident(n)).collect();
    TableIterator::once((
        status.as_str().to_string(),
        planning_ms,
        execution_ms,
        used,
        !seq_scans.is_empty(),
        seq_scans,
        detail.join("; "),
    ))
}
