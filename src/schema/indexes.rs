//! Index analysis: usage, redundant and unused indexes, foreign keys without an index, and the
//! progress of index builds.
//!
//! Every function reads the catalogs in one set-based query (no per-index SPI call, no
//! per-index lock: sizes come from `pg_class.relpages`, which takes none, where
//! `pg_relation_size()` would lock every index), and the redundancy rule runs in runbook-core.

// pgrx needs each #[pg_extern] signature to spell out its row type (it does not resolve aliases).
#![allow(clippy::type_complexity)]

use crate::own_sql::{self, col, quote_ident};
use crate::policy::app_objects;
use pgrx::prelude::*;
use runbook_core::indexes::{self as rules, IndexDef, Redundancy};
use std::collections::HashMap;

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
    /// The table's replica identity index: logical replication needs it.
    pub replica_identity: bool,
    /// The foreign keys of its table this index can serve (its leading keys are their columns).
    pub serves_fks: Vec<String>,
    /// The index of a partitioned table (relkind 'I'): dropped without CONCURRENTLY.
    pub partitioned: bool,
    /// A partition's copy of a partitioned index, which cannot be dropped by itself (2BP01):
    /// the parent index's name.
    pub copy_of: Option<String>,
}

impl IndexRow {
    /// The statement that drops this index as PostgreSQL accepts it.
    pub fn drop_statement(&self) -> String {
        if self.partitioned {
            format!(
                "DROP INDEX IF EXISTS {}",
                rules::qualified(&self.schema, &self.def.name)
            )
        } else {
            rules::drop_index_statement(&self.schema, &self.def.name)
        }
    }
}

/// SQL condition: index `x` (an alias of pg_index) can serve the foreign key `f` (an alias of
/// pg_constraint): valid, not partial, its leading keys are the key's columns in any order.
fn serves_fk(x: &str, f: &str) -> String {
    format!(
        "{x}.indisvalid AND {x}.indpred IS NULL \
         AND {x}.indnkeyatts OPERATOR(pg_catalog.>=) pg_catalog.cardinality({f}.conkey) \
         AND (pg_catalog.string_to_array({x}.indkey::pg_catalog.text, ' ')::pg_catalog.int2[])[1:pg_catalog.cardinality({f}.conkey)] \
             OPERATOR(pg_catalog.@>) {f}.conkey \
         AND (pg_catalog.string_to_array({x}.indkey::pg_catalog.text, ' ')::pg_catalog.int2[])[1:pg_catalog.cardinality({f}.conkey)] \
             OPERATOR(pg_catalog.<@) {f}.conkey"
    )
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
                c.relpages::int8 OPERATOR(pg_catalog.*) pg_catalog.current_setting('block_size')::int8, \
                pg_catalog.pg_size_pretty(c.relpages::int8 OPERATOR(pg_catalog.*) pg_catalog.current_setting('block_size')::int8), \
                i.indisreplident, \
                ARRAY(SELECT f.conname::text FROM pg_catalog.pg_constraint f \
                      WHERE f.contype OPERATOR(pg_catalog.=) 'f' AND f.conrelid OPERATOR(pg_catalog.=) i.indrelid \
                        AND {serves_i} ORDER BY 1), \
                c.relkind OPERATOR(pg_catalog.=) 'I', \
                (SELECT pg_catalog.format('%I.%I', pn.nspname, pc.relname) FROM pg_catalog.pg_inherits h \
                 JOIN pg_catalog.pg_class pc ON pc.oid OPERATOR(pg_catalog.=) h.inhparent \
                 JOIN pg_catalog.pg_namespace pn ON pn.oid OPERATOR(pg_catalog.=) pc.relnamespace \
                 WHERE h.inhrelid OPERATOR(pg_catalog.=) i.indexrelid) \
         FROM pg_catalog.pg_index i \
         JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid \
         JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) i.indrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.relnamespace \
         JOIN pg_catalog.pg_am am ON am.oid OPERATOR(pg_catalog.=) c.relam \
         LEFT JOIN pg_catalog.pg_constraint con ON con.conindid OPERATOR(pg_catalog.=) i.indexrelid \
                AND con.conrelid OPERATOR(pg_catalog.=) i.indrelid \
                AND con.contype OPERATOR(pg_catalog.=) ANY ('{{p,u,x}}'::\"char\"[]) \
         WHERE {user} \
         ORDER BY n.nspname, t.relname, c.relname",
        serves_i = serves_fk("i", "f"),
        user = app_objects::relation("n", "i.indrelid")
    );
    own_sql::with_catalog_settings(|| own_sql::select(&sql, &[], read_index_row))
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
            // The replica identity index is never dropped either: logical replication of
            // updates and deletes depends on it.
            // Nor is a partition's copy of a partitioned index: it goes with its parent.
            backs_constraint: col::<bool>(r, 16).unwrap_or(false)
                || col::<bool>(r, 24).unwrap_or(false)
                || col::<String>(r, 27).is_some(),
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
        replica_identity: col::<bool>(r, 24).unwrap_or(false),
        serves_fks: col::<Vec<String>>(r, 25).unwrap_or_default(),
        partitioned: col::<bool>(r, 26).unwrap_or(false),
        copy_of: col::<String>(r, 27),
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

/// How long the index statistics of this database have counted, and where.
pub struct StatsWindow {
    pub reset: Option<TimestampWithTimeZone>,
    pub age_s: f64,
    pub standby: bool,
    pub text: String,
}

/// The statistics window: since `pg_stat_database.stats_reset`, or, when the statistics were
/// never reset, at least since the server started (PostgreSQL 15 keeps statistics across a
/// clean restart, so the true window may be longer; the shorter one is the safe side).
pub fn stats_window() -> StatsWindow {
    own_sql::select_one(
        "SELECT d.stats_reset, \
                EXTRACT(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) \
                        COALESCE(d.stats_reset, pg_catalog.pg_postmaster_start_time()))::float8, \
                pg_catalog.pg_is_in_recovery(), \
                CASE WHEN d.stats_reset IS NULL \
                     THEN pg_catalog.format('statistics never reset (counted at least since the server started at %s)', \
                                            pg_catalog.pg_postmaster_start_time()) \
                     ELSE pg_catalog.format('statistics reset at %s', d.stats_reset) END \
         FROM pg_catalog.pg_stat_database d \
         WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()",
        &[],
        |r| StatsWindow {
            reset: col::<TimestampWithTimeZone>(r, 1),
            age_s: col::<f64>(r, 2).unwrap_or(0.0),
            standby: col::<bool>(r, 3).unwrap_or(false),
            text: col::<String>(r, 4).unwrap_or_default(),
        },
    )
}

/// Why an index must stay whatever its scans, foreign keys aside, or None.
fn must_keep_itself(row: &IndexRow) -> Option<String> {
    if let Some(parent) = &row.copy_of {
        return Some(format!(
            "keep: a partition's copy of {parent}, which it goes with"
        ));
    }
    if row.replica_identity {
        return Some("keep: the table's replica identity index".into());
    }
    if row.def.backs_constraint {
        return Some("keep: backs a constraint".into());
    }
    None
}

/// The indexes kept because a foreign key would otherwise have none: every index that would be
/// offered for dropping (unscanned, not unique, nothing else keeping it) is a candidate, and
/// runbook-core's rule keeps one per key that no other index serves.
fn fk_keepers(rows: &[IndexRow]) -> HashMap<i64, String> {
    let servers: Vec<rules::FkServer> = rows
        .iter()
        .map(|r| rules::FkServer {
            id: r.def.id,
            table_id: r.def.table_id,
            name: &r.def.name,
            fks: &r.serves_fks,
            droppable: r.is_valid && r.scans == 0 && !r.def.unique && must_keep_itself(r).is_none(),
        })
        .collect();
    rules::fk_keepers(&servers)
}

/// Why an index must stay whatever its scans, or None.
fn must_keep(row: &IndexRow, keepers: &HashMap<i64, String>) -> Option<String> {
    must_keep_itself(row).or_else(|| {
        keepers.get(&row.def.id).map(|fk| {
            format!(
                "keep: the only index left to serve foreign key {}",
                quote_ident(fk)
            )
        })
    })
}

fn recommendation(
    row: &IndexRow,
    redundant: Option<(&Redundancy, &str)>,
    window: &StatsWindow,
    min_age_s: f64,
    keepers: &HashMap<i64, String>,
) -> String {
    if !row.is_valid {
        return "invalid (a failed or running concurrent build): verify_migration_success() says how to mend it".into();
    }
    if let Some(keep) = must_keep(row, keepers) {
        return keep;
    }
    if let Some((r, cover)) = redundant {
        let what = match r.reason {
            rules::Reason::Duplicate => "duplicate",
            rules::Reason::Prefix => "leading prefix",
        };
        return format!("drop: {what} of {cover}");
    }
    if row.scans == 0 && row.def.unique {
        return "keep: enforces uniqueness, though no scans since statistics reset".into();
    }
    match rules::judge_usage(row.scans, window.age_s, min_age_s, window.standby) {
        rules::Usage::Used => "keep".into(),
        rules::Usage::Unused => "unused since statistics reset: consider dropping".into(),
        rules::Usage::Unknown(why) => format!("unknown: no scans, but {why}"),
    }
}

/// The minimum statistics age in seconds: the argument, else pg_runbook.unused_index_min_stats_age.
fn min_stats_age_s(arg: Option<Interval>) -> f64 {
    match arg {
        Some(iv) => {
            let ms = own_sql::interval_ms(&iv);
            if ms < 0.0 {
                crate::error::invalid_argument("min_stats_age", format!("{iv} is negative"));
            }
            ms / 1000.0
        }
        None => f64::from(crate::settings::UNUSED_INDEX_MIN_STATS_AGE_S.get()),
    }
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
    let window = stats_window();
    let min_age_s = min_stats_age_s(None);
    let keepers = fk_keepers(&rows);
    let names: HashMap<i64, String> = rows
        .iter()
        .map(|r| (r.def.id, r.def.name.clone()))
        .collect();
    let out: Vec<_> = rows
        .iter()
        .map(|row| {
            let red = found.get(&row.def.id);
            let cover = red.map(|r| names.get(&r.covered_by).cloned().unwrap_or_default());
            let rec = recommendation(row, red.zip(cover.as_deref()), &window, min_age_s, &keepers);
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
    let keepers = fk_keepers(&rows);
    let found = redundancies(&rows);
    let names: HashMap<i64, String> = rows
        .iter()
        .map(|r| (r.def.id, r.def.name.clone()))
        .collect();
    let out: Vec<_> = rows
        .iter()
        .filter_map(|row| {
            if keepers.contains_key(&row.def.id) {
                return None;
            }
            let r = found.get(&row.def.id)?;
            Some((
                row.schema.clone(),
                row.table.clone(),
                row.def.name.clone(),
                names.get(&r.covered_by).cloned().unwrap_or_default(),
                r.reason.describe().to_string(),
                row.size_bytes,
                row.drop_statement(),
            ))
        })
        .collect();
    TableIterator::new(out)
}

/// Indexes with no scans since statistics were last reset, at least `min_size_bytes` large.
/// `verdict` is `unused` (with a drop statement) only when the statistics cover at least
/// `min_stats_age` (default pg_runbook.unused_index_min_stats_age) on a primary; otherwise
/// `unknown`, with the age, and no statement. Left out: indexes backing a constraint, unique
/// indexes, the replica identity index, a partition's copy of a partitioned index, and the index
/// a foreign key would otherwise be left without.
#[pg_extern(stable, parallel_safe)]
fn find_unused_indexes(
    min_size_bytes: default!(Option<i64>, 0),
    min_stats_age: default!(Option<Interval>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(schemaname, String),
        name!(tablename, String),
        name!(indexname, String),
        name!(size_bytes, i64),
        name!(size, String),
        name!(stats_reset, Option<TimestampWithTimeZone>),
        name!(verdict, String),
        name!(detail, String),
        name!(drop_statement, Option<String>),
    ),
> {
    let min = crate::error::required("min_size_bytes", min_size_bytes);
    if min < 0 {
        crate::error::invalid_argument("min_size_bytes", format!("{min} is negative"));
    }
    let min_age_s = min_stats_age_s(min_stats_age);
    let window = stats_window();
    let rows = user_indexes();
    let keepers = fk_keepers(&rows);
    let out: Vec<_> = rows
        .into_iter()
        .filter(|r| {
            r.scans == 0 && !r.def.unique && must_keep(r, &keepers).is_none() && r.size_bytes >= min
        })
        .map(|r| {
            let invalid = if r.is_valid { "" } else { ", and invalid" };
            let (verdict, detail, stmt) =
                match rules::judge_usage(0, window.age_s, min_age_s, window.standby) {
                    rules::Usage::Unknown(why) => (
                        "unknown",
                        format!("no scans{invalid}, but {why}; {}", window.text),
                        None,
                    ),
                    _ => (
                        "unused",
                        format!("no scans{invalid}; {}", window.text),
                        Some(r.drop_statement()),
                    ),
                };
            (
                r.schema.clone(),
                r.table.clone(),
                r.def.name.clone(),
                r.size_bytes,
                r.size.clone(),
                window.reset,
                verdict.to_string(),
                detail,
                stmt,
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
                ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(con.conkey) WITH ORDINALITY k(attnum, ord) \
                      JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) con.conrelid \
                                                    AND a.attnum OPERATOR(pg_catalog.=) k.attnum \
                      ORDER BY k.ord), \
                pg_catalog.format('%I.%I', rn.nspname, r.relname) \
         FROM pg_catalog.pg_constraint con \
         JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) con.conrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.relnamespace \
         JOIN pg_catalog.pg_class r ON r.oid OPERATOR(pg_catalog.=) con.confrelid \
         JOIN pg_catalog.pg_namespace rn ON rn.oid OPERATOR(pg_catalog.=) r.relnamespace \
         WHERE con.contype OPERATOR(pg_catalog.=) 'f' AND con.conparentid OPERATOR(pg_catalog.=) 0::oid AND {user} \
           AND NOT EXISTS ( \
             SELECT 1 FROM pg_catalog.pg_index i \
             WHERE i.indrelid OPERATOR(pg_catalog.=) con.conrelid AND {serves}) \
         ORDER BY 1, 2, 3",
        user = app_objects::relation("n", "con.conrelid"),
        serves = serves_fk("i", "con"),
    );
    let rows = own_sql::with_catalog_settings(|| {
        own_sql::select(&sql, &[], |r| {
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
    let rows = own_sql::select(
        "SELECT p.pid, n.nspname::text, t.relname::text, ic.relname::text, p.command, p.phase, \
                p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total, \
                CASE WHEN p.blocks_total OPERATOR(pg_catalog.>) 0 \
                     THEN pg_catalog.round(100.0 OPERATOR(pg_catalog.*) p.blocks_done OPERATOR(pg_catalog./) p.blocks_total, 1)::float8 \
                     WHEN p.tuples_total OPERATOR(pg_catalog.>) 0 \
                     THEN pg_catalog.round(100.0 OPERATOR(pg_catalog.*) p.tuples_done OPERATOR(pg_catalog./) p.tuples_total, 1)::float8 END \
         FROM pg_catalog.pg_stat_progress_create_index p \
         LEFT JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) p.relid \
         LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.relnamespace \
         LEFT JOIN pg_catalog.pg_class ic ON ic.oid OPERATOR(pg_catalog.=) p.index_relid \
         WHERE p.datid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database \
                                               WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) \
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
