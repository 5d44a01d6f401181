//! The invalidation queue: `invalidate_cache`, `invalidate_cache_tag`, and the statement-level
//! triggers of `cache_invalidate_on_change` that enqueue by tag; each enqueue wakes the
//! database's worker when its transaction commits.

use super::at_commit::wake_at_commit;
use super::{text_type, valid_key, valid_tags};
use crate::error;
use crate::own_sql::{self, col, quote_ident, quote_literal};
use pgrx::PgRelation;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

/// Wakes this database's worker when the current transaction commits (used by the trigger).
#[pg_extern(volatile)]
fn cache_wake_worker() {
    wake_at_commit();
}

fn enqueue(key: Option<&str>, tag: Option<&str>, reason: &str) -> i64 {
    let schema = own_sql::ext_schema();
    let sql = format!(
        "INSERT INTO {schema}.cache_invalidation_queue (cache_key, tag, reason) VALUES ($1, $2, $3) RETURNING id"
    );
    let opt = |v: Option<&str>| -> DatumWithOid {
        v.map(|s| s.into())
            .unwrap_or_else(DatumWithOid::null::<&str>)
    };
    let id = own_sql::run_prepared(
        &sql,
        &[text_type(), text_type(), text_type()],
        &[opt(key), opt(tag), reason.into()],
        |r| col::<i64>(r, 1).unwrap_or(0),
    );
    wake_at_commit();
    id.into_iter().next().unwrap_or(0)
}

/// Enqueues the invalidation of `key`; returns the event's id.
#[pg_extern(volatile)]
fn invalidate_cache(key: Option<&str>) -> i64 {
    enqueue(Some(valid_key(key)), None, "invalidate_cache()")
}

/// Enqueues the invalidation of every entry tagged `tag`; returns the event's id.
#[pg_extern(volatile)]
fn invalidate_cache_tag(tag: Option<&str>) -> i64 {
    let tag = error::required("tag", tag);
    if tag.is_empty() {
        error::invalid_argument("tag", "must not be empty");
    }
    enqueue(None, Some(tag), "invalidate_cache_tag()")
}

const TRIGGER_NAME: &str = "pg_runbook_cache_invalidate";

fn qualified(rel: &PgRelation) -> String {
    format!(
        "{}.{}",
        quote_ident(rel.namespace()),
        quote_ident(rel.name())
    )
}

/// Installs (or replaces) a statement-level trigger on `tbl` that enqueues one event per tag on
/// every INSERT, UPDATE, DELETE and TRUNCATE.
#[pg_extern(volatile)]
fn cache_invalidate_on_change(
    tbl: Option<own_sql::Regclass>,
    tags: Option<Vec<Option<String>>>,
) -> String {
    let rel = error::required("tbl", tbl).relation("tbl");
    let tags = valid_tags(Some(error::required("tags", tags)));
    if tags.is_empty() {
        error::invalid_argument("tags", "must name at least one tag");
    }
    if !rel.is_table() && !rel.is_partitioned_table() {
        error::invalid_argument("tbl", format!("{} is not a table", qualified(&rel)));
    }
    let schema = own_sql::ext_schema();
    let args: Vec<String> = tags.iter().map(|t| quote_literal(t)).collect();
    let table = qualified(&rel);
    own_sql::execute(
        &format!(
            "CREATE OR REPLACE TRIGGER {TRIGGER_NAME} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} \
             FOR EACH STATEMENT EXECUTE FUNCTION {schema}.cache_invalidate_trigger({})",
            args.join(", ")
        ),
        &[],
    );
    format!("{table}: invalidates tags {} on change", tags.join(", "))
}

/// Removes the trigger installed by cache_invalidate_on_change(); false when there was none.
#[pg_extern(volatile)]
fn cache_invalidate_off(tbl: Option<own_sql::Regclass>) -> bool {
    let rel = error::required("tbl", tbl).relation("tbl");
    let exists = own_sql::select_one(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND tgname = $2)",
        &[rel.oid().into(), TRIGGER_NAME.into()],
        |r| col::<bool>(r, 1).unwrap_or(false),
    );
    if exists {
        own_sql::execute(
            &format!("DROP TRIGGER {TRIGGER_NAME} ON {}", qualified(&rel)),
            &[],
        );
    }
    exists
}
