//! The query-result cache (`query_cache`, `cache_put`, `cache_get`, `cached_query`), its
//! invalidation queue (`invalidate_cache*`, statement-level triggers, and
//! `drain_cache_invalidation_queue`), `warm_cache_top_queries` and `cache_stats`.
//!
//! The drain is the one unit of work the background worker runs too: `drain_batch` claims up to
//! n events with FOR UPDATE SKIP LOCKED and deletes them and the entries they name in one
//! set-based statement, through a plan prepared once per backend.

use crate::catalog::{self, col, quote_ident, quote_literal};
use crate::jsonb_datum::RawJsonb;
use crate::{error, query_guard, worker};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{PgOid, PgRelation};
use std::cell::Cell;

/// Advisory lock class for single-flight cache fills: `pg_advisory_xact_lock(CLASS, hashtext(key))`.
const FILL_LOCK_CLASS: i32 = 0x52424b43; // "RBKC"
const MAX_BATCH: i32 = 100_000;

fn text() -> PgOid {
    PgOid::BuiltIn(PgBuiltInOids::TEXTOID)
}
fn text_array() -> PgOid {
    PgOid::BuiltIn(PgBuiltInOids::TEXTARRAYOID)
}

fn valid_key(key: Option<&str>) -> &str {
    let key = error::required("key", key);
    if key.is_empty() {
        error::invalid_argument("key", "must not be empty");
    }
    key
}

fn valid_ttl(ttl: Option<Interval>) -> Interval {
    let ttl = error::required("ttl", ttl);
    if catalog::interval_ms(&ttl) <= 0.0 {
        error::invalid_argument("ttl", format!("must be positive, got {ttl}"));
    }
    ttl
}

fn valid_tags(tags: Option<Vec<Option<String>>>) -> Vec<String> {
    let tags = tags.unwrap_or_default();
    tags.into_iter()
        .map(|t| match t {
            Some(t) if !t.is_empty() => t,
            _ => error::invalid_argument("tags", "must not contain NULL or empty tags"),
        })
        .collect()
}

// ---- the cache ------------------------------------------------------------------------------
//
// An entry belongs to the role that stored it (`owner_role`): it is returned only to that role
// and its members, and only they may overwrite it while it is live. Callers have no rights on the
// cache tables; the statements below run as the extension's owner, fully qualified and built from
// no caller text, with the caller's role passed as an argument.

/// The role the current statement runs as (inside a SECURITY DEFINER function: its owner).
fn current_role() -> pg_sys::Oid {
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
    let found = catalog::as_extension_owner(|| {
        catalog::run_prepared(
            &sql,
            &[text(), PgOid::BuiltIn(PgBuiltInOids::OIDOID)],
            &[key.into(), role.into()],
            |r| col::<RawJsonb>(r, 1).map(|result| result.to_bytes()),
        )
    });
    let bytes = found.into_iter().next()?;
    worker::note_cache_hit();
    Some(RawJsonb::from_bytes(&bytes.unwrap_or_else(json_null_bytes)))
}

/// The bytes of the jsonb value `null`, for an entry whose result is SQL NULL.
fn json_null_bytes() -> Vec<u8> {
    catalog::select_one("SELECT 'null'::pg_catalog.jsonb", &[], |r| {
        col::<RawJsonb>(r, 1).map(|null| null.to_bytes())
    })
    .unwrap_or_else(|| error::spi_failure("jsonb null", "no value"))
}

/// What a caller's query needs to run again later: its text, and the search_path it was
/// written for.
struct StoredQuery<'a> {
    sql: &'a str,
    search_path: String,
}

/// Stores an entry owned by `role`; the stored query is kept when the entry was computed by
/// cached_query, and its stale twin (from an earlier invalidation) is then forgotten. Returns
/// false, storing nothing, when a live entry under `key` belongs to a role `role` is not a
/// member of.
fn store(
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
        text(),
        oid(PgBuiltInOids::JSONBOID),
        text(),
        oid(PgBuiltInOids::INTERVALOID),
        text_array(),
        oid(PgBuiltInOids::INT8OID),
        text(),
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
    let stored = catalog::as_extension_owner(|| {
        catalog::run_prepared(&sql, &types, &args, |r| col::<i64>(r, 1).unwrap_or(0))
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
    let schema = catalog::ext_schema();
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
    let schema = catalog::ext_schema();
    let found = lookup(&schema, key, current_role());
    if found.is_none() {
        worker::note_cache_miss();
    }
    found
}

/// Runs the caller's checked query through the query guard, as the current role under the
/// current search_path, and returns its rows as the bytes of a jsonb array.
fn compute(query: &str) -> Vec<u8> {
    query_guard::run_read_only("query", || rows_as_jsonb(query))
}

/// The rows of `query` (already checked, run inside the guard) as the bytes of a jsonb array.
fn rows_as_jsonb(query: &str) -> Vec<u8> {
    let sql = format!(
        "SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(q)), '[]'::pg_catalog.jsonb) \
         FROM (\n{query}\n) AS q"
    );
    Spi::connect(|client| {
        let rows = catalog::spi("running the cached query", client.select(&sql, None, &[]));
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
    let schema = catalog::ext_schema();
    let role = current_role();
    if let Some(hit) = lookup(&schema, key, role) {
        return hit;
    }
    catalog::run_prepared(
        "SELECT pg_catalog.pg_advisory_xact_lock($1, pg_catalog.hashtext($2))",
        &[PgOid::BuiltIn(PgBuiltInOids::INT4OID), text()],
        &[FILL_LOCK_CLASS.into(), key.into()],
        |_| (),
    );
    if let Some(hit) = lookup(&schema, key, role) {
        return hit;
    }
    worker::note_cache_miss();
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

/// Deletes expired entries; returns how many.
#[pg_extern(volatile)]
fn clean_expired_cache() -> i64 {
    let schema = catalog::ext_schema();
    catalog::with_lock_timeout(|| {
        catalog::execute(
            &format!("DELETE FROM {schema}.query_cache WHERE expires_at <= now()"),
            &[],
        ) as i64
    })
}

/// The cache at a glance. Hits, misses and drained events count since the server started.
#[pg_extern(volatile)]
fn cache_stats() -> TableIterator<
    'static,
    (
        name!(entries, i64),
        name!(expired_entries, i64),
        name!(hits, i64),
        name!(misses, i64),
        name!(hit_rate_pct, Option<f64>),
        name!(queue_depth, i64),
        name!(oldest_event_age, Option<Interval>),
        name!(events_drained_total, i64),
        name!(last_worker_drain_at, Option<TimestampWithTimeZone>),
    ),
> {
    let schema = catalog::ext_schema();
    // Counts only: computed as the extension's owner, since readers have no right on the tables.
    let (entries, expired, depth, oldest) = catalog::as_extension_owner(|| {
        catalog::select_one(
            &format!(
                "SELECT (SELECT count(*) FROM {schema}.query_cache), \
                    (SELECT count(*) FROM {schema}.query_cache WHERE expires_at <= now()), \
                    (SELECT count(*) FROM {schema}.cache_invalidation_queue), \
                    (SELECT now() - min(enqueued_at) FROM {schema}.cache_invalidation_queue)"
            ),
            &[],
            |r| {
                (
                    col::<i64>(r, 1).unwrap_or(0),
                    col::<i64>(r, 2).unwrap_or(0),
                    col::<i64>(r, 3).unwrap_or(0),
                    col::<Interval>(r, 4),
                )
            },
        )
    });
    let s = worker::database_counters();
    let lookups = s.hits + s.misses;
    let rate = (lookups > 0).then(|| (s.hits as f64 * 1000.0 / lookups as f64).round() / 10.0);
    let last = worker::last_worker_drain_at();
    TableIterator::once((
        entries,
        expired,
        s.hits as i64,
        s.misses as i64,
        rate,
        depth,
        oldest,
        s.drained as i64,
        last,
    ))
}

// ---- the invalidation queue ---------------------------------------------------------------

thread_local! {
    static WAKE_PENDING: Cell<bool> = const { Cell::new(false) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Asks for this database's worker to be woken when the current transaction commits (waking it
/// earlier would let it look before the events are visible).
fn wake_at_commit() {
    if !crate::settings::WAKE_ON_ENQUEUE.get() {
        return;
    }
    WAKE_PENDING.with(|w| w.set(true));
    if !CALLBACK_REGISTERED.with(|r| r.replace(true)) {
        unsafe { pg_sys::RegisterXactCallback(Some(on_xact_end), std::ptr::null_mut()) };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_end(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => {
            if WAKE_PENDING.with(|w| w.replace(false)) {
                worker::wake(unsafe { pg_sys::MyDatabaseId });
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
            WAKE_PENDING.with(|w| w.set(false));
        }
        _ => {}
    }
}

/// Wakes this database's worker when the current transaction commits (used by the trigger).
#[pg_extern(volatile)]
fn cache_wake_worker() {
    wake_at_commit();
}

fn enqueue(key: Option<&str>, tag: Option<&str>, reason: &str) -> i64 {
    let schema = catalog::ext_schema();
    let sql = format!(
        "INSERT INTO {schema}.cache_invalidation_queue (cache_key, tag, reason) VALUES ($1, $2, $3) RETURNING id"
    );
    let opt = |v: Option<&str>| -> DatumWithOid {
        v.map(|s| s.into())
            .unwrap_or_else(DatumWithOid::null::<&str>)
    };
    let id = catalog::run_prepared(
        &sql,
        &[text(), text(), text()],
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
    tbl: Option<catalog::Regclass>,
    tags: Option<Vec<Option<String>>>,
) -> String {
    let rel = error::required("tbl", tbl).relation("tbl");
    let tags = valid_tags(Some(error::required("tags", tags)));
    if tags.is_empty() {
        error::invalid_argument("tags", "must name at least one tag");
    }
    let kind = unsafe { (*rel.rd_rel).relkind } as u8;
    if kind != b'r' && kind != b'p' {
        error::invalid_argument("tbl", format!("{} is not a table", qualified(&rel)));
    }
    let schema = catalog::ext_schema();
    let args: Vec<String> = tags.iter().map(|t| quote_literal(t)).collect();
    let table = qualified(&rel);
    catalog::execute(
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
fn cache_invalidate_off(tbl: Option<catalog::Regclass>) -> bool {
    let rel = error::required("tbl", tbl).relation("tbl");
    let exists = catalog::select_one(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND tgname = $2)",
        &[rel.oid().into(), TRIGGER_NAME.into()],
        |r| col::<bool>(r, 1).unwrap_or(false),
    );
    if exists {
        catalog::execute(
            &format!("DROP TRIGGER {TRIGGER_NAME} ON {}", qualified(&rel)),
            &[],
        );
    }
    exists
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Batch {
    /// Events claimed and deleted (malformed ones included).
    pub events: i64,
    /// The highest id of the batch claimed in id order (the floor for the next batch), or the
    /// floor given.
    pub max_id: i64,
    /// Malformed events moved to cache_invalidation_rejected.
    pub rejected: i64,
}

/// Claims up to `size` events with id > `floor` (FOR UPDATE SKIP LOCKED), moves malformed ones
/// aside, deletes the events and the cache entries they name. One statement, its plan kept.
pub fn drain_batch(schema: &str, floor: i64, size: i32) -> Batch {
    // One statement: claim a batch of events, and with them the other queued events for the same
    // tags (up to 100 batches' worth): invalidating a tag once does what all of them ask, so a
    // write-heavy table's repeated tag events cost one GIN probe, not one per batch. (Keys are not
    // coalesced: a key's event costs one btree probe either way, in the queue or in the cache.)
    // Claimed rows are deleted by ctid, which they keep while locked, so the delete costs no
    // index descent; the coalesced set may list claimed rows again, and the TID scan dedups.
    // Then move malformed events aside, delete the entries named by key (one btree scan over the
    // sorted keys) and by tag (one single-entry GIN probe per distinct tag, in tag order: a GIN
    // scan with many entries costs entries x matches, and a common order makes deadlocks between
    // concurrent drainers on shared entries rarer; a row both reach is deleted once), and keep
    // the queries of cached_query entries for warming. The next batch's floor is the highest id
    // of the batch itself, not of the coalesced events.
    let sql = format!(
        "WITH claimed AS ( \
           SELECT ctid AS row_id, id, cache_key, tag FROM {schema}.cache_invalidation_queue \
           WHERE id > $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED), \
         same_tag AS ( \
           SELECT q.ctid AS row_id FROM {schema}.cache_invalidation_queue q \
           WHERE q.tag = ANY (ARRAY(SELECT DISTINCT tag FROM claimed WHERE cache_key IS NULL AND tag IS NOT NULL)) \
             AND q.cache_key IS NULL \
           LIMIT $2 * 100 FOR UPDATE SKIP LOCKED), \
         ev AS ( \
           DELETE FROM {schema}.cache_invalidation_queue \
           WHERE ctid = ANY (ARRAY(SELECT row_id FROM claimed UNION ALL SELECT row_id FROM same_tag)) \
           RETURNING id, cache_key, tag, enqueued_at, reason), \
         rejected AS ( \
           INSERT INTO {schema}.cache_invalidation_rejected (id, cache_key, tag, enqueued_at, reason, problem) \
           SELECT id, cache_key, tag, enqueued_at, reason, \
                  CASE WHEN cache_key IS NULL AND tag IS NULL THEN 'neither cache_key nor tag is set' \
                       ELSE 'both cache_key and tag are set' END \
           FROM ev WHERE (cache_key IS NULL) = (tag IS NULL) \
           ON CONFLICT (id) DO NOTHING RETURNING id), \
         by_key AS ( \
           DELETE FROM {schema}.query_cache \
           WHERE cache_key = ANY (ARRAY(SELECT cache_key FROM ev WHERE cache_key IS NOT NULL AND tag IS NULL)) \
           RETURNING cache_key, query_sql, tags, expires_at - created_at AS ttl, hits, owner_role, query_search_path), \
         by_tag AS ( \
           DELETE FROM {schema}.query_cache c \
           USING (SELECT DISTINCT u.tag FROM pg_catalog.unnest(ARRAY(SELECT tag FROM ev \
                    WHERE tag IS NOT NULL AND cache_key IS NULL)) AS u(tag) ORDER BY u.tag) t \
           WHERE c.tags @> ARRAY[t.tag] \
           RETURNING c.cache_key, c.query_sql, c.tags, c.expires_at - c.created_at AS ttl, c.hits, \
                     c.owner_role, c.query_search_path), \
         remembered AS ( \
           INSERT INTO {schema}.query_cache_stale AS s (cache_key, query_sql, tags, ttl, hits, owner_role, query_search_path) \
           SELECT DISTINCT ON (cache_key) cache_key, query_sql, tags, ttl, hits, owner_role, query_search_path \
           FROM (SELECT * FROM by_key UNION ALL SELECT * FROM by_tag) gone WHERE query_sql IS NOT NULL \
           ORDER BY cache_key \
           ON CONFLICT (cache_key) DO UPDATE SET query_sql = excluded.query_sql, tags = excluded.tags, \
             ttl = excluded.ttl, hits = greatest(s.hits, excluded.hits), invalidated_at = now(), \
             owner_role = excluded.owner_role, query_search_path = excluded.query_search_path \
           RETURNING 1) \
         SELECT count(*), coalesce((SELECT max(id) FROM claimed), $1), (SELECT count(*) FROM rejected), \
                (SELECT count(*) FROM remembered) \
         FROM ev"
    );
    let (events, max_id, rejected) = catalog::run_prepared(
        &sql,
        &[
            PgOid::BuiltIn(PgBuiltInOids::INT8OID),
            PgOid::BuiltIn(PgBuiltInOids::INT4OID),
        ],
        &[floor.into(), size.into()],
        |r| {
            (
                col::<i64>(r, 1).unwrap_or(0),
                col::<i64>(r, 2).unwrap_or(floor),
                col::<i64>(r, 3).unwrap_or(0),
            )
        },
    )
    .into_iter()
    .next()
    .unwrap_or((0, floor, 0));
    worker::note_drained(events as u64);
    Batch {
        events,
        max_id,
        rejected,
    }
}

/// Drains until the queue is empty or `max_seconds` have passed (at least one batch); returns the
/// number of events processed. Each batch starts after the last id claimed, so it never rescans
/// the dead index entries earlier batches left; once a batch comes back short, one pass from the
/// start picks up events that committed late with a lower id.
pub fn drain(schema: &str, batch_size: i32, max_seconds: i32) -> i64 {
    let started = std::time::Instant::now();
    let budget = std::time::Duration::from_secs(max_seconds as u64);
    let mut floor = 0i64;
    let mut total = 0i64;
    loop {
        let b = catalog::with_lock_timeout(|| drain_batch(schema, floor, batch_size));
        // The worker records rejections in worker_status instead.
        if b.rejected > 0 {
            pgrx::warning!(
                "pg_runbook: moved {} malformed cache invalidation event(s) to cache_invalidation_rejected",
                b.rejected
            );
        }
        total += b.events;
        if b.events < batch_size as i64 {
            if floor == 0 {
                break;
            }
            floor = 0;
        } else {
            floor = b.max_id;
        }
        if started.elapsed() >= budget {
            break;
        }
        pgrx::check_for_interrupts!();
    }
    total
}

/// Processes queued invalidations: each batch of `batch_size` events is claimed with FOR UPDATE
/// SKIP LOCKED, the entries they name are deleted, and so are the events. Stops when the queue is
/// empty or `max_seconds` have passed; returns the number of events processed.
#[pg_extern(volatile)]
fn drain_cache_invalidation_queue(
    batch_size: default!(Option<i32>, 100),
    max_seconds: default!(Option<i32>, 60),
) -> i64 {
    let batch_size = error::required("batch_size", batch_size);
    let max_seconds = error::required("max_seconds", max_seconds);
    if !(1..=MAX_BATCH).contains(&batch_size) {
        error::invalid_argument(
            "batch_size",
            format!("must be between 1 and {MAX_BATCH}, got {batch_size}"),
        );
    }
    if max_seconds < 0 {
        error::invalid_argument(
            "max_seconds",
            format!("must not be negative, got {max_seconds}"),
        );
    }
    let schema = catalog::ext_schema();
    drain(&schema, batch_size, max_seconds)
}

// ---- warming ---------------------------------------------------------------------------------

/// Recomputes the `n` most-hit cached queries that are expired or were invalidated, and, when
/// pg_prewarm is installed, loads the relations they read into shared buffers. Returns how many
/// entries were warmed; a query that fails is reported in a WARNING and skipped.
///
/// A stored query runs again only as the role that stored it (with SECURITY_RESTRICTED_OPERATION,
/// under the search_path it was written for) and only through the read-only query guard, so
/// warming gives the stored text no right its author did not have. Entries of roles the caller
/// is not a member of are left alone (a superuser, e.g. a pg_cron job, warms them all).
/// Callers: runbook_operator.
#[pg_extern(volatile)]
fn warm_cache_top_queries(n: default!(Option<i32>, 20)) -> i64 {
    let n = error::required("n", n);
    if n < 0 {
        error::invalid_argument("n", format!("must not be negative, got {n}"));
    }
    let schema = catalog::ext_schema();
    let candidates = catalog::as_extension_owner(|| {
        catalog::select(
            &format!(
                "SELECT cache_key, query_sql, tags, ttl, hits, owner_role, query_search_path FROM ( \
                   SELECT cache_key, query_sql, tags, expires_at - created_at AS ttl, hits, owner_role, query_search_path \
                   FROM {schema}.query_cache WHERE query_sql IS NOT NULL AND expires_at <= now() \
                   UNION ALL \
                   SELECT s.cache_key, s.query_sql, s.tags, s.ttl, s.hits, s.owner_role, s.query_search_path \
                   FROM {schema}.query_cache_stale s \
                   WHERE NOT EXISTS (SELECT 1 FROM {schema}.query_cache c WHERE c.cache_key = s.cache_key \
                                     AND (c.expires_at IS NULL OR c.expires_at > now()))) x \
                 WHERE pg_catalog.pg_has_role($2, owner_role, 'MEMBER') \
                 ORDER BY hits DESC, cache_key LIMIT $1"
            ),
            &[(n as i64).into(), current_role().into()],
            |r| Candidate {
                key: col::<String>(r, 1).unwrap_or_default(),
                query: col::<String>(r, 2).unwrap_or_default(),
                tags: col::<Vec<String>>(r, 3).unwrap_or_default(),
                ttl: col::<Interval>(r, 4),
                hits: col::<i64>(r, 5).unwrap_or(0),
                owner: col::<pg_sys::Oid>(r, 6).unwrap_or(pg_sys::InvalidOid),
                search_path: col::<String>(r, 7).unwrap_or_else(|| "pg_catalog".into()),
            },
        )
    });
    let prewarm = catalog::select(
        "SELECT n.nspname::pg_catalog.text FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n \
         ON n.oid = e.extnamespace WHERE e.extname = 'pg_prewarm'",
        &[],
        |r| col::<String>(r, 1),
    )
    .into_iter()
    .flatten()
    .next();
    if prewarm.is_none() && !candidates.is_empty() {
        pgrx::notice!(
            "pg_prewarm is not installed: the warmed queries' relations were not loaded into shared buffers"
        );
    }
    let mut warmed = 0i64;
    for candidate in candidates {
        let (s, p) = (schema.clone(), prewarm.clone());
        let outcome = catalog::in_subtransaction(move || warm_one(&s, candidate, p.as_deref()));
        match outcome {
            Ok(()) => warmed += 1,
            Err(e) => pgrx::warning!("pg_runbook: could not warm a cached query: {e}"),
        }
    }
    warmed
}

/// A stored query that warming may run again.
struct Candidate {
    key: String,
    query: String,
    tags: Vec<String>,
    ttl: Option<Interval>,
    hits: i64,
    owner: pg_sys::Oid,
    search_path: String,
}

/// Runs one stored query again as its owner and stores the fresh result.
fn warm_one(schema: &str, c: Candidate, prewarm_schema: Option<&str>) {
    catalog::as_role(c.owner, true, || {
        catalog::with_settings(&[("search_path", c.search_path.clone())], || {
            let query = query_guard::checked_select("query_sql", &c.query);
            let (rows, relations) = query_guard::run_read_only("query_sql", || {
                let rows = rows_as_jsonb(&query);
                let relations = match prewarm_schema {
                    Some(_) => relations_read_by(&query),
                    None => Vec::new(),
                };
                (rows, relations)
            });
            let stored = StoredQuery {
                sql: &query,
                search_path: c.search_path.clone(),
            };
            let result = RawJsonb::from_bytes(&rows);
            store(
                schema,
                &c.key,
                c.owner,
                &result,
                Some(&stored),
                c.ttl,
                &c.tags,
                c.hits,
            );
            if let Some(p) = prewarm_schema {
                prewarm_relations(p, relations);
            }
        })
    })
}

/// Loads the given relations into shared buffers with pg_prewarm.
fn prewarm_relations(prewarm_schema: &str, names: Vec<String>) {
    let sql = format!(
        "SELECT {}.pg_prewarm(c) FROM pg_catalog.to_regclass($1) AS c WHERE c IS NOT NULL",
        quote_ident(prewarm_schema)
    );
    for name in names {
        catalog::select(&sql, &[name.as_str().into()], |_| ());
    }
}

/// The tables and indexes the plan of a (checked) query reads, qualified; planned under the
/// current search_path, inside the query guard.
fn relations_read_by(query: &str) -> Vec<String> {
    let plan = Spi::connect(|client| {
        let rows = catalog::spi(
            "planning the cached query",
            client.select(
                &format!("EXPLAIN (FORMAT JSON, VERBOSE) {query}"),
                None,
                &[],
            ),
        );
        rows.into_iter()
            .next()
            .and_then(|r| col::<pgrx::Json>(&r, 1))
    });
    let mut names = Vec::new();
    if let Some(plan) = plan {
        collect_relations(&plan.0, &mut names);
    }
    names.sort();
    names.dedup();
    names
}

fn collect_relations(node: &serde_json::Value, out: &mut Vec<String>) {
    match node {
        serde_json::Value::Object(map) => {
            if let Some(schema) = map.get("Schema").and_then(|s| s.as_str()) {
                for key in ["Relation Name", "Index Name"] {
                    if let Some(name) = map.get(key).and_then(|n| n.as_str()) {
                        out.push(format!("{}.{}", quote_ident(schema), quote_ident(name)));
                    }
                }
            }
            map.values().for_each(|v| collect_relations(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_relations(v, out)),
        _ => {}
    }
}

pgrx::extension_sql_file!(
    "../sql/cache.sql",
    name = "cache",
    requires = [
        cache_wake_worker,
        cache_put,
        cache_get,
        cached_query,
        clean_expired_cache,
        cache_stats,
        invalidate_cache,
        invalidate_cache_tag,
        cache_invalidate_on_change,
        cache_invalidate_off,
        drain_cache_invalidation_queue,
        warm_cache_top_queries
    ]
);

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn drain_deletes_entries_named_by_key_and_by_tag_and_the_events() {
        Spi::run("SELECT cache_put('a', '1', '1 hour', '{t1}'), cache_put('b', '2', '1 hour'), cache_put('c', '3', '1 hour')").unwrap();
        Spi::run("SELECT invalidate_cache('b'), invalidate_cache_tag('t1')").unwrap();
        assert_eq!(
            Spi::get_one::<i64>("SELECT drain_cache_invalidation_queue(1, 5)"),
            Ok(Some(2))
        );
        assert_eq!(
            Spi::get_one::<String>("SELECT string_agg(cache_key, ',') FROM query_cache"),
            Ok(Some("c".into()))
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM cache_invalidation_queue"),
            Ok(Some(0))
        );
    }

    #[pg_test]
    fn cached_query_serves_the_second_call_from_the_cache() {
        Spi::run("CREATE TEMP SEQUENCE runs").unwrap();
        let q = "SELECT cached_query('k', 'SELECT nextval(''runs'') AS n', '1 hour')";
        let first = Spi::get_one::<pgrx::JsonB>(q).unwrap().unwrap().0;
        let second = Spi::get_one::<pgrx::JsonB>(q).unwrap().unwrap().0;
        assert_eq!(first, second);
        assert_eq!(first, serde_json::json!([{"n": 1}]));
    }
}
