//! Index analysis: usage, redundant and unused indexes, foreign keys without an index, and the
//! progress of index builds.
//!
//! Every function reads the catalogs in one set-based query (no per-index SPI call, no
//! per-index lock: sizes come from `pg_class.relpages`, which takes none, where
//! `pg_relation_size()` would lock every index), and the redundancy rule runs in runbook-core.

use crate::catalog::{self, col};
use pgrx::prelude::*;
use runbook_core::indexes::{self as rules, IndexDef, Redundancy};
use std::collections::HashMap;

/// SQL condition: the relation `rel_oid` in namespace alias `ns` is a user table: not in a
/// system or TOAST schema, and not a member of an extension (pg_runbook's own tables included).
pub fn user_relation(ns: &str, rel_oid: &str) -> String {
    format!(
        "{ns}.nspname NOT IN ('pg_catalog', 'information_schema') AND {ns}.nspname !~ '^pg_toast' \
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                         WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = {rel_oid} \
                           AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e')"
    )
}

/// One index of a user table with its statistics.
#[derive(Debug, Clone)]
pub struct IndexRow {
    pub def: IndexDef,
    pub schema: String,
    pub table: String,
    pub is_primary: bool,
    pub is_valid: bool,
    pub scans: i64,
    pub tuples_read: i64,
    pub tuples_fetched: i64,
    pub size_bytes: i64,
    pub size: String,
}

/// Every index of every user table, in one query, ordered by schema, table and index name.
pub fn user_indexes() -> Vec<IndexRow> {
    let sql = format!(
        "SELECT i.indexrelid::int8, i.indrelid::int8, n.nspname::text, t.relname::text, c.relname::text, \
                am.amname::text, i.indnkeyatts::int4, i.indkey::text, i.indexprs::text, \
                i.indclass::text, i.indcollation::text, i.indoption::text, i.indpred::text, \
                i.indisunique, i.indisprimary, con.oid IS NOT NULL, i.indisvalid, i.indisready, \
                COALESCE(pg_catalog.pg_stat_get_numscans(i.indexrelid), 0), \
                COALESCE(pg_catalog.pg_stat_get_tuples_returned(i.indexrelid), 0), \
                COALESCE(pg_catalog.pg_stat_get_tuples_fetched(i.indexrelid), 0), \
                c.relpages::int8 * pg_catalog.current_setting('block_size')::int8, \
                pg_catalog.pg_size_pretty(c.relpages::int8 * pg_catalog.current_setting('block_size')::int8) \
         FROM pg_catalog.pg_index i \
         JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
         JOIN pg_catalog.pg_class t ON t.oid = i.indrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
         JOIN pg_catalog.pg_am am ON am.oid = c.relam \
         LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid \
                                               AND con.contype IN ('p', 'u', 'x') \
         WHERE {} \
         ORDER BY n.nspname, t.relname, c.relname",
        user_relation("n", "i.indrelid")
    );
    catalog::with_catalog_settings(|| catalog::select(&sql, &[], read_index_row))
}

fn read_index_row(r: &pgrx::spi::SpiHeapTupleData) -> IndexRow {
    let nkeys = col::<i32>(r, 7).unwrap_or(0).max(0) as usize;
    let numbers = |n: usize| -> Vec<i64> {
        col::<String>(r, n)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect()
    };
    let attnums = numbers(8);
    // Expression keys, in order, from the stored tree (see normalize_node_tree).
    let mut exprs = col::<String>(r, 9)
        .map(|t| rules::split_node_list(&rules::normalize_node_tree(&t)))
        .unwrap_or_default()
        .into_iter();
    // A plain column is known by its number; an expression by its normalized tree.
    let columns: Vec<String> = attnums
        .iter()
        .enumerate()
        .map(|(k, &att)| {
            if att != 0 {
                format!("#{att}")
            } else {
                exprs.next().unwrap_or_else(|| format!("?{k}"))
            }
        })
        .collect();
    let (keys, include) = if nkeys <= columns.len() {
        (columns[..nkeys].to_vec(), columns[nkeys..].to_vec())
    } else {
        (columns, Vec::new())
    };
    let valid = col::<bool>(r, 17).unwrap_or(false);
    let ready = col::<bool>(r, 18).unwrap_or(false);
    IndexRow {
        def: IndexDef {
            id: col::<i64>(r, 1).unwrap_or(0),
            table_id: col::<i64>(r, 2).unwrap_or(0),
            name: col::<String>(r, 5).unwrap_or_default(),
            method: col::<String>(r, 6).unwrap_or_default(),
            keys,
            opclasses: numbers(10),
            collations: numbers(11),
            options: numbers(12).into_iter().map(|o| o as i16).collect(),
            include,
            predicate: col::<String>(r, 13).map(|p| rules::normalize_node_tree(&p)),
            unique: col::<bool>(r, 14).unwrap_or(false),
            backs_constraint: col::<bool>(r, 16).unwrap_or(false),
            usable: valid && ready,
        },
        schema: col::<String>(r, 3).unwrap_or_default(),
        table: col::<String>(r, 4).unwrap_or_default(),
        is_primary: col::<bool>(r, 15).unwrap_or(false),
        is_valid: valid && ready,
        scans: col::<i64>(r, 19).unwrap_or(0),
        tuples_read: col::<i64>(r, 20).unwrap_or(0),
        tuples_fetched: col::<i64>(r, 21).unwrap_or(0),
        size_bytes: col::<i64>(r, 22).unwrap_or(0),
        size: col::<String>(r, 23).unwrap_or_default(),
    }
}

/// The redundant indexes among `rows`, keyed by index id.
fn redundancies(rows: &[IndexRow]) -> HashMap<i64, Redundancy> {
    let defs: Vec<IndexDef> = rows
        .iter()
        .filter(|r| r.is_valid)
        .map(|r| r.def.clone())
        .collect();
    rules::find_redundant(&defs)
        .into_iter()
        .map(|r| (r.index, r))
        .collect()
}

fn recommendation(row: &IndexRow, redundant: Option<(&Redundancy, &str)>) -> String {
    if !row.is_valid {
        return "invalid (a failed or running concurrent build): drop it and build it again".into();
    }
    if let Some((r, cover)) = redundant {
        let what = match r.reason {
            rules::Reason::Duplicate => "duplicate",
            rules::Reason::Prefix => "leading prefix",
        };
        return format!("drop: {what} of {cover}");
    }
    if row.def.backs_constraint {
        return "keep: backs a constraint".into();
    }
    if row.scans == 0 && row.def.unique {
        return "keep: enforces uniqueness, though no scans since statistics reset".into();
    }
    if row.scans == 0 {
        return "unused since statistics reset: consider dropping".into();
    }
    "keep".into()
}

/// One row per index of a user table: its scans, tuples read and fetched (since statistics were
/// last reset), size, kind and validity, whether another index makes it redundant, and a
/// recommendation.
#[pg_extern(stable, parallel_safe)]
fn analyze_index_usage() -> TableIterator<
    'static,
    (
        name!(schemaname, String),
        name!(tablename, String),
        name!(indexname, String),
        name!(scans, i64),
        name!(tuples_read, i64),
        name!(tuples_fetched, i64),
        name!(size_bytes, i64),
        name!(size, String),
        name!(is_unique, bool),
        name!(is_primary, bool),
        name!(is_valid, bool),
        name!(is_redundant, bool),
        name!(redundant_to, Option<String>),
        name!(recommendation, String),
    ),
> {
    let rows = user_indexes();
    let found = redundancies(&rows);
    let names: HashMap<i64, String> = rows
        .iter()
        .map(|r| (r.def.id, r.def.name.clone()))
        .collect();
    let out: Vec<_> = rows
        .iter()
        .map(|row| {
            let red = found.get(&row.def.id);
            let cover = red.map(|r| names.get(&r.covered_by).cloned().unwrap_or_default());
            let rec = recommendation(row, red.zip(cover.as_deref()));
            (
                row.schema.clone(),
                row.table.clone(),
                row.def.name.clone(),
                row.scans,
                row.tuples_read,
                row.tuples_fetched,
                row.size_bytes,
                row.size.clone(),
                row.def.unique,
                row.is_primary,
                row.is_valid,
                red.is_some(),
                cover,
                rec,
            )
        })
        .collect();
    TableIterator::new(out)
}

/// Indexes that are exact duplicates of another, or whose keys lead another index's keys on the
/// same table with the same predicate, expressions, operator classes, collations and order; with
/// the index that covers each and the statement that drops it. Indexes backing constraints are
/// never listed, nor a unique index in favour of a non-unique one.
#[pg_extern(stable, parallel_safe)]
fn find_redundant_indexes() -> TableIterator<
    'static,
    (
        name!(schemaname, String),
        name!(tablename, String),
        name!(indexname, String),
        name!(covered_by, String),
        name!(reason, String),
        name!(size_bytes, i64),
        name!(drop_statement, String),
    ),
> {
    let rows = user_indexes();
    let found = redundancies(&rows);
    let names: HashMap<i64, String> = rows
        .iter()
        .map(|r| (r.def.id, r.def.name.clone()))
        .collect();
    let out: Vec<_> = rows
        .iter()
        .filter_map(|row| {
            let r = found.get(&row.def.id)?;
            Some((
                row.schema.clone(),
                row.table.clone(),
                row.def.name.clone(),
                names.get(&r.covered_by).cloned().unwrap_or_default(),
                r.reason.describe().to_string(),
                row.size_bytes,
                rules::drop_index_statement(&row.schema, &row.def.name),
            ))
        })
        .collect();
    TableIterator::new(out)
}

/// Indexes with no scans since statistics were last reset, at least `min_size_bytes` large;
/// indexes that back a constraint or enforce uniqueness are left out.
#[pg_extern(stable, parallel_safe)]
fn find_unused_indexes(
    min_size_bytes: default!(Option<i64>, 0),
) -> TableIterator<
    'static,
    (
        name!(schemaname, String),
        name!(tablename, String),
        name!(indexname, String),
        name!(size_bytes, i64),
        name!(size, String),
        name!(stats_reset, Option<TimestampWithTimeZone>),
        name!(detail, String),
        name!(drop_statement, String),
    ),
> {
    let min = crate::error::required("min_size_bytes", min_size_bytes);
    if min < 0 {
        crate::error::invalid_argument("min_size_bytes", format!("{min} is negative"));
    }
    let (reset, reset_text) = catalog::select_one(
        "SELECT stats_reset, COALESCE('statistics reset at ' || stats_reset::text, \
                'statistics never reset (counted since the database was created or the cluster initialized)') \
         FROM pg_catalog.pg_stat_database WHERE datname = pg_catalog.current_database()",
        &[],
        |r| {
            (
                col::<TimestampWithTimeZone>(r, 1),
                col::<String>(r, 2).unwrap_or_default(),
            )
        },
    );
    let out: Vec<_> = user_indexes()
        .into_iter()
        .filter(|r| r.scans == 0 && !r.def.backs_constraint && !r.def.unique && r.size_bytes >= min)
        .map(|r| {
            let detail = if r.is_valid {
                format!("no scans; {reset_text}")
            } else {
                format!("no scans, and invalid; {reset_text}")
            };
            (
                r.schema.clone(),
                r.table.clone(),
                r.def.name.clone(),
                r.size_bytes,
                r.size.clone(),
                reset,
                detail,
                rules::drop_index_statement(&r.schema, &r.def.name),
            )
        })
        .collect();
    TableIterator::new(out)
}

/// Foreign keys whose referencing columns lead no valid, non-partial index (so every delete or
/// key update on the referenced table scans the referencing one), with a suggested index.
#[pg_extern(stable, parallel_safe)]
fn find_missing_fk_indexes() -> TableIterator<
    'static,
    (
        name!(schemaname, String),
        name!(tablename, String),
        name!(constraint_name, String),
        name!(columns, Vec<String>),
        name!(referenced_table, String),
        name!(create_statement, String),
    ),
> {
    let sql = format!(
        "SELECT n.nspname::text, t.relname::text, con.conname::text, \
                ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord) \
                      JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum \
                      ORDER BY k.ord), \
                pg_catalog.quote_ident(rn.nspname) || '.' || pg_catalog.quote_ident(r.relname) \
         FROM pg_catalog.pg_constraint con \
         JOIN pg_catalog.pg_class t ON t.oid = con.conrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
         JOIN pg_catalog.pg_class r ON r.oid = con.confrelid \
         JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace \
         WHERE con.contype = 'f' AND con.conparentid = 0 AND {} \
           AND NOT EXISTS ( \
             SELECT 1 FROM pg_catalog.pg_index i \
             WHERE i.indrelid = con.conrelid AND i.indisvalid AND i.indpred IS NULL \
               AND i.indnkeyatts >= cardinality(con.conkey) \
               AND (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(con.conkey)] @> con.conkey \
               AND (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(con.conkey)] <@ con.conkey) \
         ORDER BY 1, 2, 3",
        user_relation("n", "con.conrelid")
    );
    let rows = catalog::with_catalog_settings(|| {
        catalog::select(&sql, &[], |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<String>(r, 2).unwrap_or_default(),
                col::<String>(r, 3).unwrap_or_default(),
                col::<Vec<String>>(r, 4).unwrap_or_default(),
                col::<String>(r, 5).unwrap_or_default(),
            )
        })
    });
    TableIterator::new(
        rows.into_iter()
            .map(|(schema, table, con, cols, referenced)| {
                let stmt = rules::create_index_statement(&schema, &table, &cols);
                (schema, table, con, cols, referenced, stmt)
            }),
    )
}

/// CREATE INDEX and REINDEX builds running in this database now, with their phase and progress.
#[pg_extern(volatile, parallel_safe)]
fn index_build_progress() -> TableIterator<
    'static,
    (
        name!(pid, i32),
        name!(schemaname, Option<String>),
        name!(tablename, Option<String>),
        name!(indexname, Option<String>),
        name!(command, String),
        name!(phase, String),
        name!(blocks_done, i64),
        name!(blocks_total, i64),
        name!(tuples_done, i64),
        name!(tuples_total, i64),
        name!(percent_done, Option<f64>),
    ),
> {
    let rows = catalog::select(
        "SELECT p.pid, n.nspname::text, t.relname::text, ic.relname::text, p.command, p.phase, \
                p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total, \
                CASE WHEN p.blocks_total > 0 THEN round(100.0 * p.blocks_done / p.blocks_total, 1)::float8 \
                     WHEN p.tuples_total > 0 THEN round(100.0 * p.tuples_done / p.tuples_total, 1)::float8 END \
         FROM pg_catalog.pg_stat_progress_create_index p \
         LEFT JOIN pg_catalog.pg_class t ON t.oid = p.relid \
         LEFT JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
         LEFT JOIN pg_catalog.pg_class ic ON ic.oid = p.index_relid \
         WHERE p.datid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) \
         ORDER BY p.pid",
        &[],
        |r| {
            (
                col::<i32>(r, 1).unwrap_or(0),
                col::<String>(r, 2),
                col::<String>(r, 3),
                col::<String>(r, 4),
                col::<String>(r, 5).unwrap_or_default(),
                col::<String>(r, 6).unwrap_or_default(),
                col::<i64>(r, 7).unwrap_or(0),
                col::<i64>(r, 8).unwrap_or(0),
                col::<i64>(r, 9).unwrap_or(0),
                col::<i64>(r, 10).unwrap_or(0),
                col::<f64>(r, 11),
            )
        },
    );
    TableIterator::new(rows)
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn scan_table() {
        Spi::run(
            "CREATE SCHEMA \"App\"; \
             CREATE TABLE \"App\".\"Scan\" (id bigint PRIMARY KEY, \"normalizedInput\" text, \"createdAt\" timestamptz); \
             CREATE INDEX \"Scan_normalizedInput_idx\" ON \"App\".\"Scan\" (\"normalizedInput\"); \
             CREATE INDEX \"Scan_normalizedInput_createdAt_idx\" ON \"App\".\"Scan\" (\"normalizedInput\", \"createdAt\")",
        )
        .unwrap();
    }

    #[pg_test]
    fn single_column_index_is_redundant_to_the_two_column_one() {
        scan_table();
        let found = Spi::get_two::<String, String>(
            "SELECT indexname, covered_by FROM find_redundant_indexes() WHERE schemaname = 'App'",
        )
        .unwrap();
        assert_eq!(
            found,
            (
                Some("Scan_normalizedInput_idx".into()),
                Some("Scan_normalizedInput_createdAt_idx".into())
            )
        );
    }

    #[pg_test]
    fn primary_key_index_is_never_recommended_for_dropping() {
        scan_table();
        Spi::run("CREATE INDEX \"Scan_id_copy\" ON \"App\".\"Scan\" (id)").unwrap();
        let pkey = Spi::get_one::<bool>(
            "SELECT is_redundant FROM analyze_index_usage() WHERE indexname = 'Scan_pkey'",
        );
        assert_eq!(pkey, Ok(Some(false)));
        let copy = Spi::get_one::<String>(
            "SELECT redundant_to FROM analyze_index_usage() WHERE indexname = 'Scan_id_copy'",
        );
        assert_eq!(copy, Ok(Some("Scan_pkey".into())));
    }

    #[pg_test]
    fn foreign_key_without_index_gets_a_quoted_create_statement() {
        Spi::run(
            "CREATE SCHEMA \"App\"; CREATE TABLE \"App\".\"User\" (id int PRIMARY KEY); \
             CREATE TABLE \"App\".\"Scan\" (id int, \"userId\" int REFERENCES \"App\".\"User\")",
        )
        .unwrap();
        let stmt = Spi::get_one::<String>("SELECT create_statement FROM find_missing_fk_indexes()");
        assert_eq!(
            stmt,
            Ok(Some(
                "CREATE INDEX CONCURRENTLY \"Scan_userId_idx\" ON \"App\".\"Scan\" (\"userId\")"
                    .into()
            ))
        );
    }
}
