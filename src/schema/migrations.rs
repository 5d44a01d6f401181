//! Migration verification: what a migration left behind (invalid indexes from failed concurrent
//! builds, builds still running, NOT VALID constraints) and whether it left what it promised
//! (`expect_migration` / `verify_migration`), with `assert_migration_success` for migration files
//! run with `ON_ERROR_STOP`. `check_query_plan` is in query_plan.rs.

use crate::checks::findings::{self, Finding, pass_if_none};
use crate::error;
use crate::own_sql::{self, col};
use crate::policy::names::{self, Found};
use crate::policy::{app_objects, invalid_indexes};
use pgrx::JsonB;
use pgrx::prelude::*;
use runbook_core::names::parse_qualified_name;
use runbook_core::status::Status;
use serde_json::Value;

pgrx::extension_sql_file!(
    "../../sql/migrations.sql",
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
    let (building, failed): (Vec<_>, Vec<_>) = invalid_indexes::all()
        .into_iter()
        .partition(|i| i.builder.is_some());
    let mut rows = Vec::new();
    let before = rows.len();
    for ix in &failed {
        let state = match (ix.valid, ix.ready) {
            (false, false) => "not ready and not valid",
            (false, true) => "not valid",
            _ => "not ready",
        };
        let (why, statements) = ix.advice();
        rows.push(Finding::new(
            "invalid_index",
            Status::Fail,
            ix.name.clone(),
            format!("{state}: {why}; run: {}", statements.join("; ")),
        ));
    }
    pass_if_none(
        "invalid_index",
        &mut rows,
        before,
        "no invalid or not-ready index",
    );
    let before = rows.len();
    for ix in &building {
        rows.push(Finding::new(
            "index_build",
            Status::Warn,
            ix.name.clone(),
            format!(
                "still being built by pid {}: {}",
                ix.builder.unwrap_or(0),
                ix.phase.clone().unwrap_or_default()
            ),
        ));
    }
    pass_if_none(
        "index_build",
        &mut rows,
        before,
        "no index build in progress",
    );
    let not_valid = own_sql::select(
        &format!(
            "SELECT pg_catalog.format('%I on %I.%I', con.conname, n.nspname, t.relname), \
                    pg_catalog.format('ALTER TABLE %I.%I VALIDATE CONSTRAINT %I', n.nspname, t.relname, con.conname) \
             FROM pg_catalog.pg_constraint con \
             JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) con.conrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.relnamespace \
             WHERE NOT con.convalidated AND con.conparentid OPERATOR(pg_catalog.=) 0::oid AND {} ORDER BY 1",
            app_objects::relation("n", "con.conrelid")
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
            format!("NOT VALID; run: {validate}"),
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

/// (valid, ready, being built) of a relation: an index's flags, a materialized view's
/// populated state.
fn relation_state(oid: pg_sys::Oid) -> (bool, bool, bool) {
    own_sql::select_one(
        "SELECT COALESCE(i.indisvalid, c.relkind OPERATOR(pg_catalog.<>) 'm' OR c.relispopulated), \
                COALESCE(i.indisready, true), \
                EXISTS (SELECT 1 FROM pg_catalog.pg_stat_progress_create_index p \
                        WHERE p.index_relid OPERATOR(pg_catalog.=) c.oid) \
         FROM pg_catalog.pg_class c \
         LEFT JOIN pg_catalog.pg_index i ON i.indexrelid OPERATOR(pg_catalog.=) c.oid \
         WHERE c.oid OPERATOR(pg_catalog.=) $1",
        &[oid.into()],
        |r| {
            (
                col::<bool>(r, 1).unwrap_or(false),
                col::<bool>(r, 2).unwrap_or(false),
                col::<bool>(r, 3).unwrap_or(false),
            )
        },
    )
}

fn check_expected(migration: &str, check: &'static str, name: &str) -> Finding {
    let prefix = format!("migration {migration}: ");
    let found = |status: Status, detail: &str| {
        Finding::new(check, status, name, format!("{prefix}{detail}"))
    };
    let missing = |close: &[String]| found(Status::Fail, &format!("missing{}", Found::hint(close)));
    let relation = |relkinds: &str| match names::find_relation("expected", name, relkinds) {
        Found::Relation(oid) => Ok(relation_state(oid)),
        Found::Missing(close) => Err(missing(&close)),
    };
    let verdict = match check {
        "expected_index" => relation("i,I").map(|state| match state {
            (_, _, true) => found(Status::Warn, "still being built"),
            (true, true, _) => found(Status::Pass, "present, valid and ready"),
            _ => found(
                Status::Fail,
                "invalid: the build failed; verify_migration_success() says how to mend it",
            ),
        }),
        "expected_table" => relation("r,p").map(|_| found(Status::Pass, "present")),
        "expected_materialized_view" => relation("m").map(|(populated, _, _)| {
            if populated {
                found(Status::Pass, "present and populated")
            } else {
                found(
                    Status::Warn,
                    "present but not populated: REFRESH MATERIALIZED VIEW it",
                )
            }
        }),
        "expected_constraint" => {
            let trimmed = name.trim();
            let written = name_as_written(trimmed);
            let table = trimmed[..trimmed.len() - written.len()].trim_end_matches([' ', '.']);
            match names::find_relation("expected", table, "r,p") {
                Found::Missing(close) => Err(missing(&close)),
                Found::Relation(oid) => match names::find_constraint(oid, &written) {
                    Err(close) => Err(missing(&close)),
                    Ok((true, _)) => Ok(found(Status::Pass, "present and validated")),
                    Ok((false, validate)) => {
                        Ok(found(Status::Fail, &format!("NOT VALID; run: {validate}")))
                    }
                },
            }
        }
        _ => match names::find_function(name) {
            Ok(()) => Ok(found(Status::Pass, "present")),
            Err(close) => Err(missing(&close)),
        },
    };
    verdict.unwrap_or_else(|m| m)
}

/// The last dotted part of a name as written (quotes and all): the constraint of
/// `table.constraint`.
fn name_as_written(name: &str) -> String {
    let mut quoted = false;
    let mut last = 0;
    for (i, c) in name.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => last = i + 1,
            _ => {}
        }
    }
    name[last..].trim().to_string()
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
        "SELECT migration, expected FROM {} WHERE $1 IS NULL OR migration OPERATOR(pg_catalog.=) $1 ORDER BY migration",
        own_sql::ext_object("migration_expectations")
    );
    own_sql::select(&sql, &[migration.into()], |r| {
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
    let mut rows = expectation_checks(&name, &expected);
    findings::apply_acceptances(&mut rows);
    rows
}

fn verify_all() -> Vec<Finding> {
    let mut rows = leftover_checks();
    for (name, expected) in expectations(None) {
        rows.extend(expectation_checks(&name, &expected));
    }
    findings::apply_acceptances(&mut rows);
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
    let rows = own_sql::with_catalog_settings(verify_all);
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
    let rows = own_sql::with_catalog_settings(|| match migration {
        None => verify_all(),
        Some(m) => {
            let m = migration_name("migration", Some(m));
            let mut rows = leftover_checks();
            findings::apply_acceptances(&mut rows);
            rows.extend(verify_one(&m));
            rows
        }
    });
    let failing: Vec<&Finding> = rows.iter().filter(|r| r.failing()).collect();
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
         ON CONFLICT (migration) DO UPDATE SET expected = EXCLUDED.expected, registered_at = pg_catalog.now()",
        own_sql::ext_object("migration_expectations")
    );
    own_sql::execute(&sql, &[migration.as_str().into(), expected]);
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
    let rows = own_sql::with_catalog_settings(|| verify_one(&migration));
    TableIterator::new(rows.into_iter().map(Finding::into_row))
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
