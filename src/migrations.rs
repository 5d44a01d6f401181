//! Migration verification: what a migration left behind (invalid indexes from failed concurrent
//! builds, builds still running, NOT VALID constraints) and whether it left what it promised
//! (`expect_migration` / `verify_migration`), with `assert_migration_success` for migration files
//! run with `ON_ERROR_STOP`; and `check_query_plan` for a query the migration was meant to speed up.

use crate::catalog::{self, col, quote_ident};
use crate::findings::{Finding, pass_if_none};
use crate::indexes::user_relation;
use crate::{error, query_guard};
use pgrx::prelude::*;
use pgrx::{Json, JsonB};
use runbook_core::schema::parse_qualified_name;
use runbook_core::status::Status;
use serde_json::Value;

pgrx::extension_sql_file!(
    "../sql/migrations.sql",
    name = "migrations",
    requires = [
        analyze_index_usage,
        find_redundant_indexes,
        find_unused_indexes,
        find_missing_fk_indexes,
        index_build_progress,
        verify_migration_success,
        assert_migration_success,
        expect_migration,
        verify_migration,
        check_query_plan,
        schema_baseline,
        schema_diff,
        rollback_ddl,
    ]
);

// ---- what any migration may leave behind -------------------------------------------------------

fn leftover_checks() -> Vec<Finding> {
    let indexes = catalog::select(
        &format!(
            "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname), \
                    i.indisvalid, i.indisready, p.pid, p.phase \
             FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_catalog.pg_stat_progress_create_index p ON p.index_relid = i.indexrelid \
             WHERE NOT (i.indisvalid AND i.indisready) AND {} ORDER BY 1",
            user_relation("n", "i.indrelid")
        ),
        &[],
        |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<bool>(r, 2).unwrap_or(false),
                col::<bool>(r, 3).unwrap_or(false),
                col::<i32>(r, 4),
                col::<String>(r, 5),
            )
        },
    );
    let mut rows = Vec::new();
    let (building, failed): (Vec<_>, Vec<_>) = indexes.into_iter().partition(|i| i.3.is_some());
    let before = rows.len();
    for (name, valid, ready, _, _) in &failed {
        let state = match (valid, ready) {
            (false, false) => "not ready and not valid",
            (false, true) => "not valid",
            _ => "not ready",
        };
        rows.push(Finding::new(
            "invalid_index",
            Status::Fail,
            name.clone(),
            format!("{state}: a concurrent build failed or was cancelled; DROP INDEX CONCURRENTLY it and build it again"),
        ));
    }
    pass_if_none(
        "invalid_index",
        &mut rows,
        before,
        "no invalid or not-ready index",
    );
    let before = rows.len();
    for (name, _, _, pid, phase) in &building {
        rows.push(Finding::new(
            "index_build",
            Status::Warn,
            name.clone(),
            format!(
                "still being built by pid {}: {}",
                pid.unwrap_or(0),
                phase.clone().unwrap_or_default()
            ),
        ));
    }
    pass_if_none(
        "index_build",
        &mut rows,
        before,
        "no index build in progress",
    );
    let not_valid = catalog::select(
        &format!(
            "SELECT pg_catalog.quote_ident(con.conname) || ' on ' || pg_catalog.quote_ident(n.nspname) || '.' \
                    || pg_catalog.quote_ident(t.relname), \
                    'ALTER TABLE ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.relname) \
                    || ' VALIDATE CONSTRAINT ' || pg_catalog.quote_ident(con.conname) \
             FROM pg_catalog.pg_constraint con \
             JOIN pg_catalog.pg_class t ON t.oid = con.conrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
             WHERE NOT con.convalidated AND {} ORDER BY 1",
            user_relation("n", "con.conrelid")
        ),
        &[],
        |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<String>(r, 2).unwrap_or_default(),
            )
        },
    );
    let before = rows.len();
    for (name, validate) in &not_valid {
        rows.push(Finding::new(
            "not_valid_constraint",
            Status::Warn,
            name.clone(),
            format!("NOT VALID: run {validate}"),
        ));
    }
    pass_if_none(
        "not_valid_constraint",
        &mut rows,
        before,
        "every constraint is validated",
    );
    rows
}

// ---- expectations --------------------------------------------------------------------------------

/// The kinds an expectation may list, as JSON keys, with their check names.
const KINDS: [(&str, &str); 5] = [
    ("indexes", "expected_index"),
    ("constraints", "expected_constraint"),
    ("tables", "expected_table"),
    ("materialized_views", "expected_materialized_view"),
    ("functions", "expected_function"),
];

/// Checks the shape of an expectation: an object whose keys are among [`KINDS`], each an array of
/// names that parse; constraints are named with their table (`table.constraint`). Returns the
/// number of objects listed.
fn validate_expected(expected: &Value) -> usize {
    let bad = |why: String| -> ! { error::invalid_argument("expected", why) };
    let Some(obj) = expected.as_object() else {
        bad("must be a JSON object such as {\"indexes\": [\"public.orders_user_id_idx\"]}".into());
    };
    let mut count = 0;
    for (key, value) in obj {
        if !KINDS.iter().any(|(k, _)| k == key) {
            bad(format!(
                "unknown key \"{key}\"; expected one of indexes, constraints, tables, materialized_views, functions"
            ));
        }
        let Some(items) = value.as_array() else {
            bad(format!("\"{key}\" must be an array of names"))
        };
        for item in items {
            let Some(name) = item.as_str() else {
                bad(format!("\"{key}\" lists {item}, which is not a string"))
            };
            let name_part = if key == "functions" {
                name.split('(').next().unwrap_or("")
            } else {
                name
            };
            let parts = parse_qualified_name(name_part)
                .unwrap_or_else(|e| bad(format!("in \"{key}\": {e}")));
            let (min, max) = if key == "constraints" { (2, 3) } else { (1, 2) };
            if parts.len() < min || parts.len() > max {
                bad(if key == "constraints" {
                    format!(
                        "constraint \"{name}\" must be named with its table: table.constraint or schema.table.constraint"
                    )
                } else {
                    format!("\"{name}\" in \"{key}\" must be name or schema.name")
                });
            }
            count += 1;
        }
    }
    if count == 0 {
        bad("lists no objects".into());
    }
    count
}

fn relation_text(parts: &[String]) -> String {
    parts
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Vec<_>>()
        .join(".")
}

/// (exists, valid, ready, being built) of a relation of the given relkinds.
fn relation_state(parts: &[String], relkinds: &str) -> Option<(bool, bool, bool)> {
    let sql = format!(
        "SELECT COALESCE(i.indisvalid, c.relkind <> 'm' OR c.relispopulated), COALESCE(i.indisready, true), \
                EXISTS (SELECT 1 FROM pg_catalog.pg_stat_progress_create_index p WHERE p.index_relid = c.oid) \
         FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid \
         WHERE c.oid = pg_catalog.to_regclass($1) AND c.relkind IN ({relkinds})"
    );
    catalog::select(&sql, &[relation_text(parts).into()], |r| {
        (
            col::<bool>(r, 1).unwrap_or(false),
            col::<bool>(r, 2).unwrap_or(false),
            col::<bool>(r, 3).unwrap_or(false),
        )
    })
    .into_iter()
    .next()
}

fn check_expected(migration: &str, check: &'static str, name: &str) -> Finding {
    let prefix = format!("migration {migration}: ");
    let found = |status: Status, detail: &str| {
        Finding::new(check, status, name, format!("{prefix}{detail}"))
    };
    let missing = || found(Status::Fail, "missing");
    match check {
        "expected_index" => {
            let parts = parse_qualified_name(name).unwrap_or_default();
            match relation_state(&parts, "'i', 'I'") {
                None => missing(),
                Some((_, _, true)) => found(Status::Warn, "still being built"),
                Some((true, true, _)) => found(Status::Pass, "present, valid and ready"),
                Some(_) => found(
                    Status::Fail,
                    "invalid: the build failed; drop it and build it again",
                ),
            }
        }
        "expected_table" => {
            match relation_state(&parse_qualified_name(name).unwrap_or_default(), "'r', 'p'") {
                None => missing(),
                Some(_) => found(Status::Pass, "present"),
            }
        }
        "expected_materialized_view" => {
            match relation_state(&parse_qualified_name(name).unwrap_or_default(), "'m'") {
                None => missing(),
                Some((true, _, _)) => found(Status::Pass, "present and populated"),
                Some(_) => found(
                    Status::Warn,
                    "present but not populated: REFRESH MATERIALIZED VIEW it",
                ),
            }
        }
        "expected_constraint" => {
            let parts = parse_qualified_name(name).unwrap_or_default();
            let (table, con) = parts.split_at(parts.len().saturating_sub(1));
            let state = catalog::select(
                "SELECT convalidated FROM pg_catalog.pg_constraint \
                 WHERE conrelid = pg_catalog.to_regclass($1) AND conname = $2",
                &[
                    relation_text(table).into(),
                    con.first().cloned().unwrap_or_default().into(),
                ],
                |r| col::<bool>(r, 1).unwrap_or(false),
            );
            match state.first() {
                None => missing(),
                Some(true) => found(Status::Pass, "present and validated"),
                Some(false) => found(
                    Status::Fail,
                    "NOT VALID: validate it with ALTER TABLE ... VALIDATE CONSTRAINT",
                ),
            }
        }
        _ => {
            let exists = if name.contains('(') {
                catalog::select_one(
                    "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL",
                    &[name.into()],
                    |r| col::<bool>(r, 1).unwrap_or(false),
                )
            } else {
                let parts = parse_qualified_name(name).unwrap_or_default();
                let (schema, func) = match parts.as_slice() {
                    [s, f] => (Some(s.clone()), f.clone()),
                    [f] => (None, f.clone()),
                    _ => (None, String::new()),
                };
                catalog::select_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p \
                       WHERE p.proname = $2 AND CASE WHEN $1 IS NULL THEN pg_catalog.pg_function_is_visible(p.oid) \
                             ELSE p.pronamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1) END)",
                    &[schema.into(), func.into()],
                    |r| col::<bool>(r, 1).unwrap_or(false),
                )
            };
            if exists {
                found(Status::Pass, "present")
            } else {
                missing()
            }
        }
    }
}

fn expectation_checks(migration: &str, expected: &Value) -> Vec<Finding> {
    let mut rows = Vec::new();
    for (key, check) in KINDS {
        for item in expected
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = item.as_str() {
                rows.push(check_expected(migration, check, name));
            }
        }
    }
    rows
}

/// Registered expectations, one migration or all, in name order.
fn expectations(migration: Option<&str>) -> Vec<(String, Value)> {
    let sql = format!(
        "SELECT migration, expected FROM {} WHERE $1 IS NULL OR migration = $1 ORDER BY migration",
        catalog::ext_object("migration_expectations")
    );
    catalog::select(&sql, &[migration.into()], |r| {
        (
            col::<String>(r, 1).unwrap_or_default(),
            col::<JsonB>(r, 2).map(|j| j.0).unwrap_or(Value::Null),
        )
    })
}

fn migration_name(arg: &str, migration: Option<&str>) -> String {
    let m = error::required(arg, migration);
    if m.trim().is_empty() {
        error::invalid_argument(arg, "must not be empty");
    }
    m.to_string()
}

fn verify_one(migration: &str) -> Vec<Finding> {
    let found = expectations(Some(migration));
    let Some((name, expected)) = found.into_iter().next() else {
        error::undefined_object("migration", migration);
    };
    expectation_checks(&name, &expected)
}

fn verify_all() -> Vec<Finding> {
    let mut rows = leftover_checks();
    for (name, expected) in expectations(None) {
        rows.extend(expectation_checks(&name, &expected));
    }
    rows
}

/// After a migration: invalid or not-ready indexes (failed concurrent builds), builds still
/// running, NOT VALID constraints, and the expectations of every registered migration.
#[pg_extern(volatile, parallel_safe)]
fn verify_migration_success() -> TableIterator<
    'static,
    (
        name!(check, String),
        name!(status, String),
        name!(object, String),
        name!(detail, String),
    ),
> {
    let rows = catalog::with_catalog_settings(verify_all);
    TableIterator::new(rows.into_iter().map(Finding::into_row))
}

/// Like verify_migration_success() (with `migration`, only that migration's expectations besides
/// the leftovers), but raises P0004 naming every FAIL: the last line of a migration file run with
/// `psql -v ON_ERROR_STOP=1`.
#[pg_extern(volatile, parallel_safe)]
fn assert_migration_success(
    migration: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(check, String),
        name!(status, String),
        name!(object, String),
        name!(detail, String),
    ),
> {
    let rows = catalog::with_catalog_settings(|| match migration {
        None => verify_all(),
        Some(m) => {
            let m = migration_name("migration", Some(m));
            let mut rows = leftover_checks();
            rows.extend(verify_one(&m));
            rows
        }
    });
    let failing: Vec<&Finding> = rows.iter().filter(|r| r.status == Status::Fail).collect();
    if !failing.is_empty() {
        let names: Vec<String> = failing
            .iter()
            .map(|r| format!("{} {}", r.check, r.object))
            .collect();
        let details: Vec<String> = failing
            .iter()
            .map(|r| format!("{} {}: {}", r.check, r.object, r.detail))
            .collect();
        error::assertion_failed("migration verification", &names, &details);
    }
    TableIterator::new(rows.into_iter().map(Finding::into_row))
}

/// Registers (or replaces) what `migration` must leave behind; returns how many objects it lists.
/// `expected` is `{"indexes": [...], "constraints": ["table.constraint", ...], "tables": [...],
/// "materialized_views": [...], "functions": ["name" or "name(argtypes)", ...]}`.
#[pg_extern(volatile)]
fn expect_migration(
    migration: Option<&str>,
    expected: Option<crate::jsonb_datum::RawJsonb>,
) -> i32 {
    let migration = migration_name("migration", migration);
    let expected = error::required("expected", expected);
    let count = validate_expected(&expected.to_value("expected"));
    // SAFETY: the datum is the jsonb argument of this call.
    let expected = unsafe { pgrx::datum::DatumWithOid::new(expected.datum(), pg_sys::JSONBOID) };
    let sql = format!(
        "INSERT INTO {} AS e (migration, expected) VALUES ($1, $2) \
         ON CONFLICT (migration) DO UPDATE SET expected = EXCLUDED.expected, registered_at = now()",
        catalog::ext_object("migration_expectations")
    );
    catalog::execute(&sql, &[migration.as_str().into(), expected]);
    count as i32
}

/// Each object `migration` registered with expect_migration(): present, valid and (indexes) ready.
#[pg_extern(volatile, parallel_safe)]
fn verify_migration(
    migration: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(check, String),
        name!(status, String),
        name!(object, String),
        name!(detail, String),
    ),
> {
    let migration = migration_name("migration", migration);
    let rows = catalog::with_catalog_settings(|| verify_one(&migration));
    TableIterator::new(rows.into_iter().map(Finding::into_row))
}

// ---- check_query_plan ----------------------------------------------------------------------------

/// What an EXPLAIN (FORMAT JSON) plan says: indexes used and relations scanned sequentially.
fn plan_summary(plan: &Value, indexes: &mut Vec<(String, String)>, seq_scans: &mut Vec<String>) {
    let text = |k: &str| {
        plan.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if let Some(index) = plan.get("Index Name").and_then(Value::as_str) {
        let entry = (text("Schema"), index.to_string());
        if !indexes.contains(&entry) {
            indexes.push(entry);
        }
    }
    if text("Node Type") == "Seq Scan" {
        let rel = format!(
            "{}.{}",
            quote_ident(&text("Schema")),
            quote_ident(&text("Relation Name"))
        );
        if !seq_scans.contains(&rel) {
            seq_scans.push(rel);
        }
    }
    for child in plan
        .get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        plan_summary(child, indexes, seq_scans);
    }
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
    let expected_index = expect_index.map(|e| {
        let parts = parse_qualified_name(e)
            .unwrap_or_else(|why| error::invalid_argument("expect_index", why));
        if parts.len() > 2 {
            error::invalid_argument(
                "expect_index",
                format!("\"{e}\" must be index or schema.index"),
            );
        }
        parts
    });
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
            let rows = catalog::spi("running EXPLAIN", client.update(&explain, None, &[]));
            rows.into_iter()
                .next()
                .and_then(|r| catalog::col::<Json>(&r, 1))
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
    let (mut indexes, mut seq_scans) = (Vec::new(), Vec::new());
    if let Some(plan) = top.get("Plan") {
        plan_summary(plan, &mut indexes, &mut seq_scans);
    }

    let mut failures = Vec::new();
    if let Some(parts) = &expected_index {
        let used = indexes.iter().any(|(schema, name)| match parts.as_slice() {
            [s, n] => s == schema && n == name,
            [n] => n == name,
            _ => false,
        });
        if !used {
            failures.push(format!(
                "expected index {} was not used",
                relation_text(parts)
            ));
        }
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

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn an_unmet_expectation_fails_verify_migration() {
        Spi::run("SELECT expect_migration('m1', '{\"tables\": [\"public.no_such_table\"]}')")
            .unwrap();
        let status = Spi::get_one::<String>("SELECT status FROM verify_migration('m1')");
        assert_eq!(status, Ok(Some("FAIL".into())));
    }

    #[pg_test(error = "migration verification failed: expected_table public.no_such_table")]
    fn assert_migration_success_raises_naming_the_missing_object() {
        Spi::run("SELECT expect_migration('m1', '{\"tables\": [\"public.no_such_table\"]}')")
            .unwrap();
        Spi::run("SELECT * FROM assert_migration_success('m1')").unwrap();
    }

    #[pg_test(
        error = "invalid value for argument \"query\": DELETE is not allowed: must be a read-only SELECT"
    )]
    fn check_query_plan_refuses_a_data_modifying_cte() {
        Spi::run("CREATE TABLE t (id int)").unwrap();
        Spi::run("SELECT * FROM check_query_plan('WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d')").unwrap();
    }

    #[pg_test]
    fn check_query_plan_reports_a_sequential_scan() {
        Spi::run("CREATE TABLE t (id int)").unwrap();
        let seq = Spi::get_one::<bool>("SELECT seq_scan FROM check_query_plan('SELECT * FROM t')");
        assert_eq!(seq, Ok(Some(true)));
    }

    #[pg_test]
    fn rollback_ddl_recreates_a_dropped_index_concurrently() {
        Spi::run("CREATE TABLE t (id int); CREATE INDEX t_id_idx ON t (id)").unwrap();
        Spi::run("SELECT schema_baseline('b')").unwrap();
        Spi::run("DROP INDEX t_id_idx").unwrap();
        let stmt = Spi::get_one::<String>("SELECT statement FROM rollback_ddl('b')");
        assert_eq!(
            stmt,
            Ok(Some(
                "CREATE INDEX CONCURRENTLY t_id_idx ON public.t USING btree (id)".into()
            ))
        );
    }
}
