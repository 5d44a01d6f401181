//! The store: entries under a key, owned by the role that stored them (`cache_put`,
//! `cache_get`, `cached_query`), and the deletion of expired ones (`clean_expired_cache`).

use super::{text_array_type, text_type, valid_key, valid_tags, valid_ttl};
use crate::jsonb_datum::RawJsonb;
use crate::own_sql::{self, col};
use crate::{error, policy::query_guard, shmem};
use pgrx::PgOid;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

/// Advisory lock class for single-flight cache fills: `pg_advisory_xact_lock(CLASS, hashtext(key))`.
const FILL_LOCK_CLASS: i32 = 0x52424b43; // "RBKC"

// An entry belongs to the role that stored it (`owner_role`): it is returned only to that role
// and its members, and only they may overwrite it while it is live. Callers have no rights on the
// cache tables; the statements below run as the extension's owner, fully qualified and built from
// no caller text, with the caller's role passed as an argument.

/// The role the current statement runs as (inside a SECURITY DEFINER function: its owner).
pub(super) fn current_role() -> pg_sys::Oid {
    // SAFETY: GetUserId only reads backend-local state.
    unsafe { pg_sys::GetUserId() }
}

/// The live result for key, if `role` may read it, counting the hit; `None` otherwise.
fn lookup(schema: &str, key: &str, role: pg_sys::Oid) -> Option<RawJsonb> {
    let sql = format!(
        "UPDATE {schema}.query_cache SET hits = hits + 1, last_hit_at = now() \
         WHERE cache_key = $1 AND (expires_at IS NULL OR expires_at > now()) \
           AND pg_catalog.pg_has_role($2, owner_role, 'USAGE') \
         RETURNING result"
    );
    let found = own_sql::as_extension_owner(|| {
        own_sql::run_prepared(
            &sql,
            &[text_type(), PgOid::BuiltIn(PgBuiltInOids::OIDOID)],
            &[key.into(), role.into()],
            |r| col::<RawJsonb>(r, 1).map(|result| result.to_bytes()),
        )
    });
    let bytes = found.into_iter().next()?;
    shmem::count_cache_hit();
    Some(RawJsonb::from_bytes(&bytes.unwrap_or_else(json_null_bytes)))
}

/// The bytes of the jsonb value `null`, for an entry whose result is SQL NULL.
fn json_null_bytes() -> Vec<u8> {
    own_sql::select_one("SELECT 'null'::pg_catalog.jsonb", &[], |r| {
        col::<RawJsonb>(r, 1).map(|null| null.to_bytes())
    })
    .unwrap_or_else(|| error::spi_failure("jsonb null", "no value"))
}

/// What a caller's query needs to run again later: its text, and the search_path it was
/// written for.
pub(super) struct StoredQuery<'a> {
    pub sql: &'a str,
    pub search_path: String,
}

/// Stores an entry owned by `role`; the stored query is kept when the entry was computed by
/// cached_query, and its stale twin (from an earlier invalidation) is then forgotten. Returns
/// false, storing nothing, when a live entry under `key` belongs to a role `role` is not a
/// member of.
#[allow(clippy::too_many_arguments)] // the columns of one cache entry
pub(super) fn store(
    schema: &str,
    key: &str,
    role: pg_sys::Oid,
    result: &RawJsonb,
    query: Option<&StoredQuery>,
    ttl: Option<Interval>,
    tags: &[String],
    hits: i64,
) -> bool {
    let sql = format!(
        "WITH put AS ( \
           INSERT INTO {schema}.query_cache AS c \
             (cache_key, result, query_sql, query_search_path, tags, created_at, expires_at, hits, owner_role) \
           VALUES ($1, $2, $3, $7, $5, now(), now() + $4, $6, $8) \
           ON CONFLICT (cache_key) DO UPDATE SET result = excluded.result, query_sql = excluded.query_sql, \
             query_search_path = excluded.query_search_path, tags = excluded.tags, \
             created_at = excluded.created_at, expires_at = excluded.expires_at, owner_role = excluded.owner_role \
           WHERE pg_catalog.pg_has_role(excluded.owner_role, c.owner_role, 'USAGE') \
              OR c.expires_at <= now() \
           RETURNING 1), \
         forget AS ( \
           DELETE FROM {schema}.query_cache_stale \
           WHERE $3 IS NOT NULL AND cache_key = $1 AND EXISTS (SELECT FROM put)) \
         SELECT count(*) FROM put"
    );
    let oid = |o: PgBuiltInOids| PgOid::BuiltIn(o);
    let types = [
        text_type(),
        oid(PgBuiltInOids::JSONBOID),
        text_type(),
        oid(PgBuiltInOids::INTERVALOID),
        text_array_type(),
        oid(PgBuiltInOids::INT8OID),
        text_type(),
        oid(PgBuiltInOids::OIDOID),
    ];
    let optional_text = |t: Option<&str>| -> DatumWithOid {
        match t {
            Some(t) => t.into(),
            None => DatumWithOid::null::<&str>(),
        }
    };
    let ttl: DatumWithOid = match ttl {
        Some(t) => t.into(),
        None => DatumWithOid::null::<Interval>(),
    };
    // SAFETY: the datum is a jsonb of this call, and the SPI argument's type is jsonb.
    let result = unsafe { DatumWithOid::new(result.datum(), pg_sys::JSONBOID) };
    let args = [
        key.into(),
        result,
        optional_text(query.map(|q| q.sql)),
        ttl,
        tags.to_vec().into(),
        hits.into(),
        optional_text(query.map(|q| q.search_path.as_str())),
        role.into(),
    ];
    let stored = own_sql::as_extension_owner(|| {
        own_sql::run_prepared(&sql, &types, &args, |r| col::<i64>(r, 1).unwrap_or(0))
    });
    stored.first().copied().unwrap_or(0) > 0
}

/// Stores `result` under `key` for `ttl`, with `tags` for invalidation by tag. The entry belongs
/// to the calling role: only it and its members read it, and a live entry of another role under
/// the same key is not overwritten (42501). Callers: runbook_operator.
#[pg_extern(volatile)]
fn cache_put(
    key: Option<&str>,
    result: Option<RawJsonb>,
    ttl: Option<Interval>,
    tags: default!(Option<Vec<Option<String>>>, "'{}'"),
) {
    let key = valid_key(key);
    let result = error::required("result", result);
    let ttl = valid_ttl(ttl);
    let tags = valid_tags(tags);
    let schema = own_sql::ext_schema();
    if !store(
        &schema,
        key,
        current_role(),
        &result,
        None,
        Some(ttl),
        &tags,
        0,
    ) {
        error::insufficient_privilege(format!(
            "cache key \"{key}\" holds a live entry of a role you are not a member of"
        ));
    }
}

/// The cached result for `key`, or NULL when it is missing, expired, or stored by a role the
/// caller is not a member of. Callers: runbook_operator.
#[pg_extern(volatile)]
fn cache_get(key: Option<&str>) -> Option<RawJsonb> {
    let key = valid_key(key);
    let schema = own_sql::ext_schema();
    let found = lookup(&schema, key, current_role());
    if found.is_none() {
        shmem::count_cache_miss();
    }
    found
}

/// Runs the caller's checked query through the query guard, as the current role under the
/// current search_path, and returns its rows as the bytes of a jsonb array.
fn compute(query: &str) -> Vec<u8> {
    query_guard::run_read_only("query", || rows_as_jsonb(query))
}

/// The rows of `query` (already checked, run inside the guard) as the bytes of a jsonb array.
pub(super) fn rows_as_jsonb(query: &str) -> Vec<u8> {
    let sql = format!(
        "SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(q)), '[]'::pg_catalog.jsonb) \
         FROM (\n{query}\n) AS q"
    );
    Spi::connect(|client| {
        let rows = own_sql::spi("running the cached query", client.select(&sql, None, &[]));
        rows.into_iter()
            .next()
            .and_then(|r| col::<RawJsonb>(&r, 1))
            .map(|rows| rows.to_bytes())
            .unwrap_or_else(|| error::spi_failure("running the cached query", "no row"))
    })
}

/// The current search_path, as the caller's query was written for it.
fn current_search_path() -> String {
    // SAFETY: namespace_search_path is the backend-local string behind search_path.
    unsafe {
        let p = pg_sys::namespace_search_path;
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// The cached result for `key`, or the rows of the read-only `query` run as the caller, cached
/// for `ttl` with `tags`. The query passes the read-only query guard (one SELECT that writes and
/// locks nothing, run read-only in a subtransaction that is rolled back). Concurrent misses on
/// one key run the query once: the others wait on a transaction-level advisory lock and then
/// read the first caller's result. When the key holds a live entry of another role, the rows are
/// returned uncached. Callers: runbook_operator.
#[pg_extern(volatile)]
fn cached_query(
    key: Option<&str>,
    query: Option<&str>,
    ttl: Option<Interval>,
    tags: default!(Option<Vec<Option<String>>>, "'{}'"),
) -> RawJsonb {
    let key = valid_key(key);
    let query = query_guard::checked_select("query", error::required("query", query));
    let ttl = valid_ttl(ttl);
    let tags = valid_tags(tags);
    let schema = own_sql::ext_schema();
    let role = current_role();
    if let Some(hit) = lookup(&schema, key, role) {
        return hit;
    }
    own_sql::run_prepared(
        "SELECT pg_catalog.pg_advisory_xact_lock($1, pg_catalog.hashtext($2))",
        &[PgOid::BuiltIn(PgBuiltInOids::INT4OID), text_type()],
        &[FILL_LOCK_CLASS.into(), key.into()],
        |_| (),
    );
    if let Some(hit) = lookup(&schema, key, role) {
        return hit;
    }
    shmem::count_cache_miss();
    let stored_query = StoredQuery {
        sql: &query,
        search_path: current_search_path(),
    };
    let result = RawJsonb::from_bytes(&compute(&query));
    store(
        &schema,
        key,
        role,
        &result,
        Some(&stored_query),
        Some(ttl),
        &tags,
        0,
    );
    result
}

/// Deletes expired entries; returns how many. The background worker calls it directly on its
/// maintenance interval.
#[pg_extern(volatile)]
pub fn clean_expired_cache() -> i64 {
    let schema = own_sql::ext_schema();
    own_sql::with_lock_timeout(|| {
        own_sql::execute(
            &format!("DELETE FROM {schema}.query_cache WHERE expires_at <= now()"),
            &[],
        ) as i64
    })
}
