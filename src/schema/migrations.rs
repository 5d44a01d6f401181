//! Migration verification: what a migration left behind (invalid indexes from failed concurrent
//! builds, builds still running, NOT VALID constraints) and whether it left what it promised
//! (`expect_migration` / `verify_migration`), with `assert_migration_success` for migration files
//! run with `ON_ERROR_STOP`. `check_query_plan` is in query_plan.rs.

use crate::checks::findings::{self, Finding, pass_if_none};
use crate::error;
use crate::own_sql::{self, col, quote_ident};
use crate::policy::names::{self, Found};
use crate::schema::indexes::user_relation;
use pgrx::JsonB;
use pgrx::prelude::*;
use runbook_core::names::parse_qualified_name;
use runbook_core::schema;
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

/// An index that is not valid and ready, with what the advice needs.
struct Unusable {
    oid: pg_sys::Oid,
    name: String,
    valid: bool,
    ready: bool,
    builder: Option<i32>,
    phase: Option<String>,
    /// The index of a partitioned table (relkind 'I').
    partitioned: bool,
    definition: String,
    /// The table (quoted, qualified), and the constraint (quoted name, definition) it backs.
    table: String,
    constraint: Option<(String, String)>,
}

fn unusable_indexes() -> Vec<Unusable> {
    let sql = format!(
        "SELECT i.indexrelid, pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' \
                    OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname), \
                i.indisvalid, i.indisready, p.pid, p.phase, c.relkind OPERATOR(pg_catalog.=) 'I', \
                pg_catalog.pg_get_indexdef(i.indexrelid), \
                pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' \
                    OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.relname), \
                pg_catalog.quote_ident(con.conname), pg_catalog.pg_get_constraintdef(con.oid) \
         FROM pg_catalog.pg_index i \
         JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid \
         JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) i.indrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         LEFT JOIN pg_catalog.pg_stat_progress_create_index p \
                ON p.index_relid OPERATOR(pg_catalog.=) i.indexrelid \
         LEFT JOIN pg_catalog.pg_constraint con ON con.conindid OPERATOR(pg_catalog.=) i.indexrelid \
                AND con.conrelid OPERATOR(pg_catalog.=) i.indrelid \
                AND con.contype OPERATOR(pg_catalog.=) ANY ('{{p,u,x}}'::\"char\"[]) \
         WHERE NOT (i.indisvalid AND i.indisready) AND {} ORDER BY 2",
        user_relation("n", "i.indrelid")
    );
    own_sql::with_settings(&[("search_path", "pg_catalog, pg_temp".into())], || {
        own_sql::select(&sql, &[], |r| Unusable {
            oid: col::<pg_sys::Oid>(r, 1).unwrap_or(pg_sys::InvalidOid),
            name: col::<String>(r, 2).unwrap_or_default(),
            valid: col::<bool>(r, 3).unwrap_or(false),
            ready: col::<bool>(r, 4).unwrap_or(false),
            builder: col::<i32>(r, 5),
            phase: col::<String>(r, 6),
            partitioned: col::<bool>(r, 7).unwrap_or(false),
            definition: col::<String>(r, 8).unwrap_or_default(),
            table: col::<String>(r, 9).unwrap_or_default(),
            constraint: col::<String>(r, 10).zip(col::<String>(r, 11)),
        })
    })
}

/// For an invalid index of a partitioned table (made `ON ONLY` the parent, or by `ALTER TABLE
/// ONLY ... ADD PRIMARY KEY`), the statements that make it valid: for each partition that has
/// no index attached to it, attach the partition's matching index, building it first when there
/// is none. DROP INDEX CONCURRENTLY is refused on such an index (0A000), and dropping it
/// loses the definition the migration wanted.
fn attach_partitions_advice(ix: &Unusable) -> Vec<String> {
    let sql = "SELECT pg_catalog.quote_ident(pn.nspname), pc.relname::text, pc.relkind OPERATOR(pg_catalog.=) 'r', \
            (SELECT pg_catalog.quote_ident(xn.nspname) OPERATOR(pg_catalog.||) '.' \
                        OPERATOR(pg_catalog.||) pg_catalog.quote_ident(xc.relname) \
             FROM pg_catalog.pg_index x \
             JOIN pg_catalog.pg_class xc ON xc.oid OPERATOR(pg_catalog.=) x.indexrelid \
             JOIN pg_catalog.pg_namespace xn ON xn.oid OPERATOR(pg_catalog.=) xc.relnamespace \
             WHERE x.indrelid OPERATOR(pg_catalog.=) pc.oid \
               AND x.indisunique OPERATOR(pg_catalog.=) pi.indisunique \
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h2 \
                               WHERE h2.inhrelid OPERATOR(pg_catalog.=) x.indexrelid) \
               AND pg_catalog.substring(pg_catalog.pg_get_indexdef(x.indexrelid), ' USING .*$') \
                   OPERATOR(pg_catalog.=) pg_catalog.substring(pg_catalog.pg_get_indexdef(pi.indexrelid), ' USING .*$') \
               AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint xk \
                           WHERE xk.conindid OPERATOR(pg_catalog.=) x.indexrelid \
                             AND xk.conrelid OPERATOR(pg_catalog.=) pc.oid) \
                   OPERATOR(pg_catalog.=) $2 \
             ORDER BY 1 LIMIT 1) \
     FROM pg_catalog.pg_index pi \
     JOIN pg_catalog.pg_inherits ht ON ht.inhparent OPERATOR(pg_catalog.=) pi.indrelid \
     JOIN pg_catalog.pg_class pc ON pc.oid OPERATOR(pg_catalog.=) ht.inhrelid \
     JOIN pg_catalog.pg_namespace pn ON pn.oid OPERATOR(pg_catalog.=) pc.relnamespace \
     WHERE pi.indexrelid OPERATOR(pg_catalog.=) $1 \
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits hi \
                       JOIN pg_catalog.pg_index ci ON ci.indexrelid OPERATOR(pg_catalog.=) hi.inhrelid \
                       WHERE hi.inhparent OPERATOR(pg_catalog.=) pi.indexrelid \
                         AND ci.indrelid OPERATOR(pg_catalog.=) pc.oid) \
     ORDER BY 1, 2";
    let parts = own_sql::with_settings(&[("search_path", "pg_catalog, pg_temp".into())], || {
        own_sql::select(sql, &[ix.oid.into(), ix.constraint.is_some().into()], |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<String>(r, 2).unwrap_or_default(),
                col::<bool>(r, 3).unwrap_or(false),
                col::<String>(r, 4),
            )
        })
    });
    let mut out = Vec::new();
    for (schema, partition, leaf, candidate) in parts {
        let attach = |index: &str| format!("ALTER INDEX {} ATTACH PARTITION {index}", ix.name);
        if let Some(candidate) = candidate {
            out.push(attach(&candidate));
            continue;
        }
        let new_name = schema::partition_index_name(&partition, &ix.name_only());
        let target = format!("{schema}.{}", quote_ident(&partition));
        match &ix.constraint {
            // A constraint's index attaches only an index that backs the same kind of constraint.
            Some((_, def)) => out.push(format!(
                "ALTER TABLE {target} ADD CONSTRAINT {} {def}",
                quote_ident(&new_name)
            )),
            None => out.push(schema::partition_index_definition(
                &ix.definition,
                &quote_ident(&new_name),
                &target,
                leaf,
            )),
        }
        out.push(attach(&format!("{schema}.{}", quote_ident(&new_name))));
    }
    out
}

impl Unusable {
    /// The index's own name, unquoted.
    fn name_only(&self) -> String {
        own_sql::select_one(
            "SELECT relname::text FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1",
            &[self.oid.into()],
            |r| col::<String>(r, 1).unwrap_or_default(),
        )
    }

    /// What to run so that the index is valid again, as statements to run one by one.
    fn advice(&self) -> (String, Vec<String>) {
        if self.partitioned {
            let statements = attach_partitions_advice(self);
            let why = "the index of a partitioned table lacks the index of some partitions \
                       (created ON ONLY the parent or by ALTER TABLE ONLY); attach them";
            return (why.into(), statements);
        }
        if let Some((name, def)) = &self.constraint {
            // An index that backs a constraint cannot be dropped by itself (2BP01).
            let why = "the index backs a constraint: drop and add the constraint again";
            return (
                why.into(),
                vec![schema::readd_constraint(&self.table, name, def)],
            );
        }
        let drop = format!("DROP INDEX CONCURRENTLY IF EXISTS {}", self.name);
        let build = schema::concurrent_index_definition(&self.definition, false);
        if self.definition.starts_with("CREATE UNIQUE INDEX ") {
            // A unique build usually fails on duplicate keys: building it again before they
            // are mended would fail the same way.
            let why = format!(
                "a concurrent build failed or was cancelled; once the keys are unique, build it \
                 again with {build}"
            );
            return (why, vec![drop]);
        }
        let why = "a concurrent build failed or was cancelled; drop it and build it again";
        (why.into(), vec![drop, build])
    }
}

fn leftover_checks() -> Vec<Finding> {
    let (building, failed): (Vec<_>, Vec<_>) = unusable_indexes()
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
