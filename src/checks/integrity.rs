//! Data integrity: `check_data_integrity()`.
//!
//! NOT VALID constraints (and how many rows violate each, counted with a bounded query), tables
//! without a primary key, sequences near their maximum, and NOT VALID foreign keys whose
//! referencing rows point nowhere (the only foreign keys PostgreSQL has not checked itself).

pub use crate::checks::findings::{Finding, pass_if_none};
use crate::checks::preflight;
use crate::error;
use crate::own_sql::{self, col};
use crate::policy::app_objects;
use pgrx::prelude::*;
use runbook_core::integrity::{judge_sequence, sequence_used_pct};
use runbook_core::status::Status;

struct NotValid {
    kind: String,
    table: String,
    name: String,
    /// The query counting violating rows, `LIMIT $1`; for a CHECK constraint, the query that
    /// writes that query (pg_get_expr locks the table, so it runs where a lock timeout is caught).
    count_sql: String,
}

fn not_valid_constraints() -> Vec<NotValid> {
    let app_schema = app_objects::schema("n");
    // The FK's join and NULL tests are built here with format('%I'), so every column name is
    // quoted; a CHECK's expression comes from pg_get_expr, later, per constraint (it locks the
    // table; '%' in names is doubled for that second format). Constraints cloned onto partitions
    // (conparentid <> 0) are checked through their parent's.
    // The join compares each key column with the foreign key's own equality operator
    // (conpfeqop, primary side on the left), named by its schema: a key of a type whose `=` is
    // not in pg_catalog (citext) still compares, and nothing resolves through a search_path.
    let sql = format!(
        "SELECT con.contype::pg_catalog.text, pg_catalog.format('%I.%I', n.nspname, c.relname), \
                pg_catalog.quote_ident(con.conname), \
                CASE con.contype \
                WHEN 'c' THEN pg_catalog.format('SELECT pg_catalog.format(%L, pg_catalog.pg_get_expr(conbin, conrelid)) \
                                      FROM pg_catalog.pg_constraint WHERE oid OPERATOR(pg_catalog.=) %s', \
                                     pg_catalog.format('SELECT pg_catalog.count(*) FROM (SELECT 1 FROM %s.%s WHERE (%%s) IS FALSE LIMIT $1) s', \
                                            pg_catalog.replace(pg_catalog.quote_ident(n.nspname), '%', '%%'), \
                                            pg_catalog.replace(pg_catalog.quote_ident(c.relname), '%', '%%')), con.oid) \
                ELSE pg_catalog.format('SELECT pg_catalog.count(*) FROM (SELECT 1 FROM %I.%I c WHERE %s AND NOT EXISTS \
                             (SELECT 1 FROM %I.%I p WHERE %s) LIMIT $1) s', \
                            n.nspname, c.relname, \
                            CASE WHEN con.confmatchtype OPERATOR(pg_catalog.=) 'f' \
                                 THEN pg_catalog.format('(%s)', k.any_set) ELSE k.all_set END, \
                            fn.nspname, fc.relname, k.joined) \
                END \
         FROM pg_catalog.pg_constraint con \
         JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) con.conrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         LEFT JOIN pg_catalog.pg_class fc ON fc.oid OPERATOR(pg_catalog.=) con.confrelid \
         LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid OPERATOR(pg_catalog.=) fc.relnamespace \
         LEFT JOIN LATERAL ( \
             SELECT pg_catalog.string_agg(pg_catalog.format('p.%I OPERATOR(%I.%s) c.%I', \
                                          fa.attname, opn.nspname, op.oprname, a.attname), ' AND ' ORDER BY u.i) AS joined, \
                    pg_catalog.string_agg(pg_catalog.format('c.%I IS NOT NULL', a.attname), ' AND ' ORDER BY u.i) AS all_set, \
                    pg_catalog.string_agg(pg_catalog.format('c.%I IS NOT NULL', a.attname), ' OR ' ORDER BY u.i) AS any_set \
             FROM ROWS FROM (pg_catalog.unnest(con.conkey), pg_catalog.unnest(con.confkey), \
                             pg_catalog.unnest(con.conpfeqop)) WITH ORDINALITY u(att, fatt, eqop, i) \
             JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) con.conrelid \
                                           AND a.attnum OPERATOR(pg_catalog.=) u.att \
             JOIN pg_catalog.pg_attribute fa ON fa.attrelid OPERATOR(pg_catalog.=) con.confrelid \
                                            AND fa.attnum OPERATOR(pg_catalog.=) u.fatt \
             JOIN pg_catalog.pg_operator op ON op.oid OPERATOR(pg_catalog.=) u.eqop \
             JOIN pg_catalog.pg_namespace opn ON opn.oid OPERATOR(pg_catalog.=) op.oprnamespace \
         ) k ON con.contype OPERATOR(pg_catalog.=) 'f' \
         WHERE NOT con.convalidated AND con.contype OPERATOR(pg_catalog.=) ANY ('{{c,f}}'::\"char\"[]) \
           AND con.conparentid OPERATOR(pg_catalog.=) 0::oid AND {app_schema} \
         ORDER BY 2, 3"
    );
    own_sql::select(&sql, &[], |r| NotValid {
        kind: col::<String>(r, 1).unwrap_or_default(),
        table: col::<String>(r, 2).unwrap_or_default(),
        name: col::<String>(r, 3).unwrap_or_default(),
        count_sql: col::<String>(r, 4).unwrap_or_default(),
    })
}

fn counted(n: i64, bound: i32) -> String {
    if n >= i64::from(bound) {
        format!("at least {n} (counted up to {bound})")
    } else {
        format!("{n} (counted up to {bound})")
    }
}

fn constraint_findings(bound: i32, rows: &mut Vec<Finding>) {
    let (before_nv, mut orphans) = (rows.len(), Vec::new());
    for c in not_valid_constraints() {
        let object = format!("{} on {}", c.name, c.table);
        let fix = format!("ALTER TABLE {} VALIDATE CONSTRAINT {}", c.table, c.name);
        let what = if c.kind == "f" {
            "foreign key"
        } else {
            "check constraint"
        };
        // Each count reads a user table and may meet a migration's lock: in a subtransaction,
        // a lock timeout there costs this constraint's count, not the whole check.
        let (count_sql, bound_arg, is_check) = (c.count_sql.clone(), bound, c.kind == "c");
        let counted_rows = own_sql::in_subtransaction(move || {
            let count_sql = if is_check {
                own_sql::select_one(&count_sql, &[], |r| col::<String>(r, 1).unwrap_or_default())
            } else {
                count_sql
            };
            own_sql::select_one(&count_sql, &[bound_arg.into()], |r| {
                col::<i64>(r, 1).unwrap_or(0)
            })
        });
        let n = match counted_rows {
            Ok(n) => n,
            Err(message) => {
                rows.push(Finding::new(
                    "not_valid_constraint",
                    Status::Warn,
                    object,
                    format!("NOT VALID {what}; its violating rows could not be counted: {message}"),
                ));
                continue;
            }
        };
        let status = if n > 0 { Status::Fail } else { Status::Warn };
        let detail = if n > 0 {
            format!(
                "NOT VALID {what}; {} violating rows; fix them, then run: {fix}",
                counted(n, bound)
            )
        } else {
            format!("NOT VALID {what}; no violating rows; run: {fix}")
        };
        rows.push(Finding::new(
            "not_valid_constraint",
            status,
            object.clone(),
            detail,
        ));
        if c.kind == "f" {
            let status = if n > 0 { Status::Fail } else { Status::Pass };
            orphans.push(Finding::new(
                "orphaned_foreign_keys",
                status,
                object,
                format!("{} referencing rows point nowhere", counted(n, bound)),
            ));
        }
    }
    pass_if_none(
        "not_valid_constraint",
        rows,
        before_nv,
        "every constraint is validated",
    );
    let before = rows.len();
    rows.extend(orphans);
    pass_if_none(
        "orphaned_foreign_keys",
        rows,
        before,
        "no NOT VALID foreign keys (validated ones are enforced by PostgreSQL)",
    );
}

fn tables_without_primary_key(rows: &mut Vec<Finding>) {
    let app_schema = app_objects::schema("n");
    let not_member = app_objects::not_extension_member("c.oid");
    let before = rows.len();
    let sql = format!(
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{{r,p}}'::\"char\"[]) AND NOT c.relispartition AND {app_schema} \
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint p \
                           WHERE p.conrelid OPERATOR(pg_catalog.=) c.oid AND p.contype OPERATOR(pg_catalog.=) 'p') \
           AND {not_member} \
         ORDER BY 1"
    );
    for table in own_sql::select(&sql, &[], |r| col::<String>(r, 1).unwrap_or_default()) {
        rows.push(Finding::new(
            "table_without_primary_key",
            Status::Warn,
            table,
            "no primary key: logical replication cannot replicate its UPDATEs and DELETEs, and duplicate rows go unnoticed",
        ));
    }
    pass_if_none(
        "table_without_primary_key",
        rows,
        before,
        "every table has a primary key",
    );
}

fn sequence_headroom(warn_pct: f64, fail_pct: f64, rows: &mut Vec<Finding>) {
    let before = rows.len();
    // pg_sequences.last_value is NULL for a sequence never called or not readable by the caller.
    let seqs = own_sql::select(
        "SELECT pg_catalog.format('%I.%I', schemaname, sequencename), last_value, min_value, max_value, \
                increment_by, data_type::text \
         FROM pg_catalog.pg_sequences WHERE NOT cycle ORDER BY 1",
        &[],
        |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<i64>(r, 2),
                col::<i64>(r, 3).unwrap_or(1),
                col::<i64>(r, 4).unwrap_or(i64::MAX),
                col::<i64>(r, 5).unwrap_or(1),
                col::<String>(r, 6).unwrap_or_default(),
            )
        },
    );
    let mut highest = 0.0_f64;
    for (name, last, min, max, inc, ty) in &seqs {
        let pct = sequence_used_pct(*last, *min, *max, *inc);
        highest = highest.max(pct);
        let status = judge_sequence(pct, warn_pct, fail_pct);
        if status != Status::Pass {
            rows.push(Finding::new(
                "sequence_headroom",
                status,
                name.clone(),
                format!(
                    "{pct:.1}% of its range used (last value {}, maximum {max}, {ty}); warn >= {warn_pct}%, fail >= {fail_pct}%; {}",
                    last.map_or("none".into(), |v| v.to_string()),
                    if ty == "bigint" && *max == i64::MAX {
                        "plan a new key before it runs out".to_string()
                    } else if ty == "bigint" {
                        format!("ALTER SEQUENCE {name} NO MAXVALUE")
                    } else {
                        format!("widen the column to bigint, then ALTER SEQUENCE {name} AS bigint")
                    }
                ),
            ));
        }
    }
    pass_if_none(
        "sequence_headroom",
        rows,
        before,
        &format!("{} sequences below {warn_pct}% of their range", seqs.len()),
    );
}

/// Every integrity finding, as the compliance report includes them.
pub fn all_findings(violation_limit: i32, warn_pct: f64, fail_pct: f64) -> Vec<Finding> {
    // Pinned search_path: the CHECK expressions pg_get_expr prints, and the counts built from
    // them, name everything outside pg_catalog by its schema.
    let pinned = [("search_path", "pg_catalog, pg_temp".to_string())];
    own_sql::with_lock_timeout(|| {
        own_sql::with_settings(&pinned, || {
            let mut rows = Vec::new();
            constraint_findings(violation_limit, &mut rows);
            tables_without_primary_key(&mut rows);
            sequence_headroom(warn_pct, fail_pct, &mut rows);
            crate::checks::findings::apply_acceptances(&mut rows);
            rows
        })
    })
}

/// Integrity checks: one row per finding (and a PASS row for a check that found nothing).
#[pg_extern(volatile, parallel_restricted, requires = [preflight::runbook_setting])]
fn check_data_integrity(
    violation_limit: default!(Option<i32>, "1000"),
    sequence_warn_pct: default!(
        Option<f64>,
        "@extschema@.runbook_setting('pg_runbook.sequence_warn_pct')::float8"
    ),
    sequence_fail_pct: default!(
        Option<f64>,
        "@extschema@.runbook_setting('pg_runbook.sequence_fail_pct')::float8"
    ),
) -> TableIterator<
    'static,
    (
        name!(check, String),
        name!(status, String),
        name!(object, String),
        name!(detail, String),
    ),
> {
    let limit = error::required("violation_limit", violation_limit);
    if limit < 1 {
        error::invalid_argument(
            "violation_limit",
            format!("{limit} is not a positive row count"),
        );
    }
    let (warn, fail) = (
        preflight::percent("sequence_warn_pct", sequence_warn_pct),
        preflight::percent("sequence_fail_pct", sequence_fail_pct),
    );
    if warn > fail {
        error::invalid_argument(
            "sequence_warn_pct",
            format!("{warn}% is above sequence_fail_pct ({fail}%)"),
        );
    }
    let rows = all_findings(limit, warn, fail);
    TableIterator::new(rows.into_iter().map(Finding::into_row))
}
