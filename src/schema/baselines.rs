//! Schema baselines: `schema_baseline(label)` snapshots the definitions of indexes, constraints and
//! materialized views; `schema_diff(label)` says what changed since; `rollback_ddl(label)` gives
//! the statements that bring indexes and constraints back. runbook-core compares and orders.

// pgrx needs each #[pg_extern] signature to spell out its row type (it does not resolve aliases).
#![allow(clippy::type_complexity)]

use crate::error;
use crate::own_sql::{self, col};
use crate::policy::app_objects;
use pgrx::prelude::*;
use runbook_core::schema::{self, Kind, SchemaObject};

/// The schema now, in the columns of schema_baseline_objects (after the label). Indexes that back
/// a constraint come with their constraint. Partitions' copies of a parent's index or constraint
/// are listed too, marked `inherited`, so that a partition detached later keeps its copies.
fn current_objects_sql() -> String {
    format!(
        "SELECT 'index'::text AS kind, n.nspname::text AS schemaname, t.relname::text AS tablename, \
                c.relname::text AS name, pg_catalog.pg_get_indexdef(i.indexrelid) AS definition, \
                i.indisvalid AND i.indisready AS valid, NULL::\"char\" AS contype, \
                c.relkind OPERATOR(pg_catalog.=) 'I' AS partitioned, \
                EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h \
                        WHERE h.inhrelid OPERATOR(pg_catalog.=) i.indexrelid) AS inherited \
         FROM pg_catalog.pg_index i \
         JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid \
         JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) i.indrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.relnamespace \
         WHERE {idx} \
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint con \
                           WHERE con.conindid OPERATOR(pg_catalog.=) i.indexrelid \
                             AND con.conrelid OPERATOR(pg_catalog.=) i.indrelid \
                             AND con.contype OPERATOR(pg_catalog.=) ANY ('{{p,u,x}}'::\"char\"[])) \
         UNION ALL \
         SELECT 'constraint', n.nspname::text, t.relname::text, con.conname::text, \
                pg_catalog.pg_get_constraintdef(con.oid), con.convalidated, con.contype, false, \
                con.conparentid OPERATOR(pg_catalog.<>) 0::oid \
         FROM pg_catalog.pg_constraint con \
         JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) con.conrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.relnamespace \
         WHERE con.contype OPERATOR(pg_catalog.=) ANY ('{{p,u,x,f,c}}'::\"char\"[]) AND {con} \
         UNION ALL \
         SELECT 'materialized view', n.nspname::text, c.relname::text, c.relname::text, \
                pg_catalog.pg_get_viewdef(c.oid, true), c.relispopulated, NULL, false, false \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE c.relkind OPERATOR(pg_catalog.=) 'm' AND {mv}",
        idx = app_objects::relation("n", "i.indrelid"),
        con = app_objects::relation("n", "con.conrelid"),
        mv = app_objects::relation("n", "c.oid"),
    )
}

/// Runs `f` with the catalog settings and `search_path = pg_catalog, pg_temp`: pg_get_indexdef,
/// pg_get_constraintdef and pg_get_viewdef then qualify every name outside pg_catalog
/// (`REFERENCES app.b(bb)`), so a definition means the same whatever search_path the baseline
/// was taken, compared or rolled back under.
fn pinned<R>(f: impl FnOnce() -> R) -> R {
    own_sql::with_catalog_settings(|| {
        own_sql::with_settings(&[("search_path", "pg_catalog, pg_temp".to_string())], f)
    })
}

fn read_object(r: &pgrx::spi::SpiHeapTupleData) -> SchemaObject {
    SchemaObject {
        kind: Kind::parse(&col::<String>(r, 1).unwrap_or_default()).unwrap_or(Kind::Index),
        schema: col::<String>(r, 2).unwrap_or_default(),
        table: col::<String>(r, 3).unwrap_or_default(),
        name: col::<String>(r, 4).unwrap_or_default(),
        definition: col::<String>(r, 5).unwrap_or_default(),
        valid: col::<bool>(r, 6).unwrap_or(false),
        contype: col::<i8>(r, 7).map(|c| c as u8 as char),
        partitioned: col::<bool>(r, 8).unwrap_or(false),
        inherited: col::<bool>(r, 9).unwrap_or(false),
    }
}

fn label_arg(label: Option<&str>) -> String {
    let label = error::required("label", label);
    if label.trim().is_empty() {
        error::invalid_argument("label", "must not be empty");
    }
    label.to_string()
}

fn baseline_exists(label: &str) -> bool {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE label OPERATOR(pg_catalog.=) $1)",
        own_sql::ext_object("schema_baselines")
    );
    own_sql::select_one(&sql, &[label.into()], |r| {
        col::<bool>(r, 1).unwrap_or(false)
    })
}

/// The baseline's objects; 42704 when there is no such baseline.
fn baseline_objects(label: &str) -> Vec<SchemaObject> {
    if !baseline_exists(label) {
        error::undefined_object("schema baseline", label);
    }
    let sql = format!(
        "SELECT kind, schemaname, tablename, name, definition, valid, contype, partitioned, inherited \
         FROM {} WHERE label OPERATOR(pg_catalog.=) $1",
        own_sql::ext_object("schema_baseline_objects")
    );
    own_sql::select(&sql, &[label.into()], read_object)
}

fn current_objects() -> Vec<SchemaObject> {
    pinned(|| own_sql::select(&current_objects_sql(), &[], read_object))
}

/// Snapshots the definitions of every index, constraint and materialized view of user tables
/// under `label`, and returns how many objects it holds. Taking an existing label again raises
/// unless `replace => true`.
#[pg_extern(volatile)]
fn schema_baseline(label: Option<&str>, replace: default!(Option<bool>, "false")) -> i64 {
    let label = label_arg(label);
    let replace = error::required("replace", replace);
    if baseline_exists(&label) {
        if !replace {
            error::invalid_argument(
                "label",
                format!(
                    "schema baseline \"{label}\" already exists; pass replace => true to take it again"
                ),
            );
        }
        let sql = format!(
            "DELETE FROM {} WHERE label OPERATOR(pg_catalog.=) $1",
            own_sql::ext_object("schema_baselines")
        );
        own_sql::execute(&sql, &[label.as_str().into()]);
    }
    own_sql::execute(
        &format!(
            "INSERT INTO {} (label) VALUES ($1)",
            own_sql::ext_object("schema_baselines")
        ),
        &[label.as_str().into()],
    );
    let sql = format!(
        "INSERT INTO {} (label, kind, schemaname, tablename, name, definition, valid, contype, partitioned, inherited) \
         SELECT $1, o.* FROM ({}) o",
        own_sql::ext_object("schema_baseline_objects"),
        current_objects_sql()
    );
    pinned(|| own_sql::execute(&sql, &[label.as_str().into()])) as i64
}

/// What was added, dropped or changed (definition or validity) in indexes, constraints and
/// materialized views since the baseline `label`.
#[pg_extern(volatile, parallel_safe)]
fn schema_diff(
    label: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(change, String),
        name!(kind, String),
        name!(schemaname, String),
        name!(tablename, String),
        name!(name, String),
        name!(baseline_definition, Option<String>),
        name!(current_definition, Option<String>),
    ),
> {
    let label = label_arg(label);
    let before = baseline_objects(&label);
    let changes = schema::diff(&before, &current_objects());
    let describe = |o: &SchemaObject| {
        if o.valid {
            o.definition.clone()
        } else {
            let state = match o.kind {
                Kind::Index => "INVALID",
                Kind::Constraint => "NOT VALID",
                Kind::MaterializedView => "NOT POPULATED",
            };
            if o.definition.ends_with("NOT VALID") {
                o.definition.clone()
            } else {
                format!("{} ({state})", o.definition)
            }
        }
    };
    TableIterator::new(
        changes
            .into_iter()
            // A partition's copy changes with its parent, which is reported.
            .filter(|c| !c.object().inherited)
            .map(|c| {
                let o = c.object().clone();
                (
                    c.change.as_str().to_string(),
                    o.kind.as_str().to_string(),
                    o.schema,
                    o.table,
                    o.name,
                    c.before.as_ref().map(describe),
                    c.after.as_ref().map(describe),
                )
            })
            .collect::<Vec<_>>(),
    )
}

/// The statements that bring indexes and constraints back to the baseline `label`, one per row
/// in a safe order (drops before creates, keys before the foreign keys that need them). Run them
/// outside a transaction block (they build and drop indexes CONCURRENTLY), for example with
/// `SELECT statement FROM rollback_ddl('before') ORDER BY step \gexec`.
#[pg_extern(volatile, parallel_safe)]
fn rollback_ddl(
    label: Option<&str>,
) -> TableIterator<'static, (name!(step, i32), name!(statement, String))> {
    let label = label_arg(label);
    let before = baseline_objects(&label);
    let now = current_objects();
    let changes = schema::diff(&before, &now);
    let tables: std::collections::HashSet<(String, String)> = own_sql::select(
        "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,m}'::\"char\"[])",
        &[],
        |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<String>(r, 2).unwrap_or_default(),
            )
        },
    )
    .into_iter()
    .collect();
    let ddl = schema::rollback(&changes, |s, t| {
        tables.contains(&(s.to_string(), t.to_string()))
    });
    TableIterator::new(
        ddl.into_iter()
            .enumerate()
            .map(|(i, s)| (i as i32 + 1, s))
            .collect::<Vec<_>>(),
    )
}
