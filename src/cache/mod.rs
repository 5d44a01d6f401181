//! The query-result cache (`query_cache`, `cache_put`, `cache_get`, `cached_query`), its
//! invalidation queue (`invalidate_cache*`, statement-level triggers, and
//! `drain_cache_invalidation_queue`), `warm_cache_top_queries` and `cache_stats`.
//!
//! The drain is the one unit of work the background worker runs too: `drain_batch` claims up to
//! n events with FOR UPDATE SKIP LOCKED and deletes them and the entries they name in one
//! set-based statement, through a plan prepared once per backend.

use crate::jsonb_datum::RawJsonb;
use crate::own_sql::{self, col, quote_ident, quote_literal};
use crate::{error, policy::query_guard, worker};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{PgOid, PgRelation};
use runbook_core::drain::{self, BatchOutcome};
use std::cell::{Cell, RefCell};

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
    if own_sql::interval_ms(&ttl) <= 0.0 {
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
    let found = own_sql::as_extension_owner(|| {
        own_sql::run_prepared(
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
    own_sql::select_one("SELECT 'null'::pg_catalog.jsonb", &[], |r| {
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
    let schema = own_sql::ext_schema();
    own_sql::with_lock_timeout(|| {
        own_sql::execute(
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
    let schema = own_sql::ext_schema();
    // Counts only: computed as the extension's owner, since readers have no right on the tables.
    let (entries, expired, depth, oldest) = own_sql::as_extension_owner(|| {
        own_sql::select_one(
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
    /// Events drained in this transaction, by subtransaction nesting level: they reach
    /// cache_stats() only when the top transaction commits, and a rolled-back subtransaction
    /// (a failed batch, a PL/pgSQL EXCEPTION block) takes its own away.
    static DRAINED_PENDING: RefCell<Vec<(i32, u64)>> = const { RefCell::new(Vec::new()) };
}

fn register_callbacks() {
    if !CALLBACK_REGISTERED.with(|r| r.replace(true)) {
        // SAFETY: plain function pointers with no argument, registered once per backend.
        unsafe {
            pg_sys::RegisterXactCallback(Some(on_xact_end), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(on_subxact_end), std::ptr::null_mut());
        }
    }
}

/// Asks for this database's worker to be woken when the current transaction commits (waking it
/// earlier would let it look before the events are visible).
fn wake_at_commit() {
    if !crate::settings::WAKE_ON_ENQUEUE.get() {
        return;
    }
    WAKE_PENDING.with(|w| w.set(true));
    register_callbacks();
}

/// Counts drained events toward cache_stats() once the transaction that deleted them commits.
fn note_drained(events: i64) {
    if events <= 0 {
        return;
    }
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    DRAINED_PENDING.with(|p| p.borrow_mut().push((level, events as u64)));
    register_callbacks();
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_end(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => {
            let drained: u64 = DRAINED_PENDING.with(|p| p.take().iter().map(|(_, n)| n).sum());
            worker::note_drained(drained);
            if WAKE_PENDING.with(|w| w.replace(false)) {
                worker::wake(crate::backend::database());
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            DRAINED_PENDING.with(|p| p.borrow_mut().clear());
            WAKE_PENDING.with(|w| w.set(false));
        }
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact_end(
    event: pg_sys::SubXactEvent::Type,
    _my_subid: pg_sys::SubTransactionId,
    _parent_subid: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    // Called while the ending subtransaction is still the current one.
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => {
            DRAINED_PENDING.with(|p| p.borrow_mut().retain(|(l, _)| *l < level));
        }
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => DRAINED_PENDING.with(|p| {
            for entry in p.borrow_mut().iter_mut().filter(|(l, _)| *l >= level) {
                entry.0 = level - 1;
            }
        }),
        _ => {}
    }
}

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
    tbl: Option<own_sql::Regclass>,
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

/// Claims up to `size` events with id > `floor` (FOR UPDATE SKIP LOCKED) and finishes what it can
/// in one statement, its plan kept: malformed events are moved aside; the cache rows named by key,
/// and up to `max_entries` rows named by tag, are locked with SKIP LOCKED and deleted. An event
/// is deleted only when every row it names is gone: one whose row another session holds (another
/// drainer, a cache_get counting a hit) or whose tag has more rows than this batch's chunk stays
/// queued for a later batch. So drainers never wait for each other, and no statement holds
/// query_cache for longer than one chunk.
pub fn drain_batch(schema: &str, floor: i64, size: i32, max_entries: i32) -> BatchOutcome {
    // Tag events claimed here also take the other queued events for the same tag (up to 100
    // batches' worth): deleting the tagged entries once does what all of them ask. A batch works
    // on at most tags_per_batch tags and `per_tag` entries of each; the probe reads one row more
    // than it may delete, so a tag whose probe rows are all locked and deleted has no entry left
    // in this statement's snapshot (a later entry was stored after the event and is not stale).
    // A cache row updated since the snapshot fails the ctid recheck of the locking scan and counts
    // as held: its event is retried. Claimed rows are deleted by ctid, which they keep while locked.
    let sql = format!(
        "WITH claimed AS MATERIALIZED ( \
           SELECT ctid AS row_id, id, cache_key, tag FROM {schema}.cache_invalidation_queue \
           WHERE id OPERATOR(pg_catalog.>) $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED), \
         tag_list AS MATERIALIZED ( \
           SELECT DISTINCT tag FROM claimed WHERE cache_key IS NULL AND tag IS NOT NULL \
           ORDER BY tag LIMIT $4), \
         per_tag AS MATERIALIZED ( \
           SELECT greatest($3::pg_catalog.int8 OPERATOR(pg_catalog./) \
                  greatest((SELECT pg_catalog.count(*) FROM tag_list), 1), 1) AS n), \
         same_tag AS MATERIALIZED ( \
           SELECT q.ctid AS row_id, q.id, q.cache_key, q.tag FROM {schema}.cache_invalidation_queue q \
           WHERE q.tag OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT tag FROM tag_list)) AND q.cache_key IS NULL \
           LIMIT $2 OPERATOR(pg_catalog.*) 100 FOR UPDATE SKIP LOCKED), \
         key_cand AS MATERIALIZED ( \
           SELECT c.ctid AS row_id, c.cache_key FROM {schema}.query_cache c \
           WHERE c.cache_key OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT cache_key FROM claimed \
                 WHERE cache_key IS NOT NULL AND tag IS NULL))), \
         tag_cand AS MATERIALIZED ( \
           SELECT t.tag, p.row_id, p.rn FROM tag_list t CROSS JOIN LATERAL ( \
             SELECT c.ctid AS row_id, pg_catalog.row_number() OVER () AS rn FROM ( \
               SELECT c.ctid FROM {schema}.query_cache c \
               WHERE c.tags OPERATOR(pg_catalog.@>) ARRAY[t.tag] \
               LIMIT (SELECT n OPERATOR(pg_catalog.+) 1 FROM per_tag)) c) p), \
         locked AS MATERIALIZED ( \
           SELECT c.ctid AS row_id FROM {schema}.query_cache c \
           WHERE c.ctid OPERATOR(pg_catalog.=) ANY (ARRAY( \
               SELECT row_id FROM key_cand UNION ALL \
               SELECT row_id FROM tag_cand WHERE rn OPERATOR(pg_catalog.<=) (SELECT n FROM per_tag))) \
           FOR UPDATE SKIP LOCKED), \
         gone AS ( \
           DELETE FROM {schema}.query_cache c \
           WHERE c.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT row_id FROM locked)) \
           RETURNING c.cache_key, c.query_sql, c.tags, c.expires_at OPERATOR(pg_catalog.-) c.created_at AS ttl, c.hits, \
                     c.owner_role, c.query_search_path), \
         held_keys AS MATERIALIZED ( \
           SELECT k.cache_key FROM key_cand k \
           WHERE NOT EXISTS (SELECT 1 FROM locked l WHERE l.row_id OPERATOR(pg_catalog.=) k.row_id)), \
         open_tags AS MATERIALIZED ( \
           SELECT t.tag FROM tag_cand t \
           WHERE NOT EXISTS (SELECT 1 FROM locked l WHERE l.row_id OPERATOR(pg_catalog.=) t.row_id)), \
         done AS MATERIALIZED ( \
           SELECT e.row_id, e.id FROM (SELECT * FROM claimed UNION SELECT * FROM same_tag) e \
           WHERE CASE \
             WHEN (e.cache_key IS NULL) OPERATOR(pg_catalog.=) (e.tag IS NULL) THEN true \
             WHEN e.cache_key IS NOT NULL THEN NOT EXISTS (SELECT 1 FROM held_keys h \
                  WHERE h.cache_key OPERATOR(pg_catalog.=) e.cache_key) \
             ELSE EXISTS (SELECT 1 FROM tag_list t WHERE t.tag OPERATOR(pg_catalog.=) e.tag) \
                  AND NOT EXISTS (SELECT 1 FROM open_tags o WHERE o.tag OPERATOR(pg_catalog.=) e.tag) \
           END), \
         ev AS ( \
           DELETE FROM {schema}.cache_invalidation_queue \
           WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT row_id FROM done)) \
           RETURNING id, cache_key, tag, enqueued_at, reason), \
         rejected AS ( \
           INSERT INTO {schema}.cache_invalidation_rejected (id, cache_key, tag, enqueued_at, reason, problem) \
           SELECT id, cache_key, tag, enqueued_at, reason, \
                  CASE WHEN cache_key IS NULL AND tag IS NULL THEN 'neither cache_key nor tag is set' \
                       ELSE 'both cache_key and tag are set' END \
           FROM ev WHERE (cache_key IS NULL) OPERATOR(pg_catalog.=) (tag IS NULL) \
           ON CONFLICT (id) DO NOTHING RETURNING id), \
         remembered AS ( \
           INSERT INTO {schema}.query_cache_stale AS s (cache_key, query_sql, tags, ttl, hits, owner_role, query_search_path) \
           SELECT DISTINCT ON (cache_key) cache_key, query_sql, tags, ttl, hits, owner_role, query_search_path \
           FROM gone WHERE query_sql IS NOT NULL ORDER BY cache_key \
           ON CONFLICT (cache_key) DO UPDATE SET query_sql = excluded.query_sql, tags = excluded.tags, \
             ttl = excluded.ttl, hits = greatest(s.hits, excluded.hits), invalidated_at = pg_catalog.now(), \
             owner_role = excluded.owner_role, query_search_path = excluded.query_search_path \
           RETURNING 1) \
         SELECT (SELECT pg_catalog.count(*) FROM ev), (SELECT pg_catalog.count(*) FROM claimed), \
                (SELECT pg_catalog.count(*) FROM claimed c WHERE NOT EXISTS \
                   (SELECT 1 FROM done d WHERE d.id OPERATOR(pg_catalog.=) c.id)), \
                (SELECT pg_catalog.count(*) FROM gone), \
                coalesce((SELECT pg_catalog.max(id) FROM claimed), $1), \
                (SELECT pg_catalog.count(*) FROM rejected), (SELECT pg_catalog.count(*) FROM remembered)"
    );
    let int4 = PgOid::BuiltIn(PgBuiltInOids::INT4OID);
    let tags = drain::tags_per_batch(max_entries as i64);
    let outcome = own_sql::run_prepared(
        &sql,
        &[
            PgOid::BuiltIn(PgBuiltInOids::INT8OID),
            int4,
            int4,
            PgOid::BuiltIn(PgBuiltInOids::INT8OID),
        ],
        &[floor.into(), size.into(), max_entries.into(), tags.into()],
        |r| {
            let n = |i| col::<i64>(r, i).unwrap_or(0);
            BatchOutcome {
                events_done: n(1),
                claimed: n(2),
                unfinished: n(3),
                entries_deleted: n(4),
                max_id: col::<i64>(r, 5).unwrap_or(floor),
                rejected: n(6),
            }
        },
    )
    .into_iter()
    .next()
    .unwrap_or_default();
    note_drained(outcome.events_done);
    outcome
}

/// One batch as the extension's own statement: under pg_runbook.lock_timeout and the pinned
/// search_path, with the batch-size settings in force.
pub fn drain_step(schema: &str, floor: i64, batch_size: i32) -> BatchOutcome {
    let max_entries = crate::settings::DRAIN_MAX_ENTRIES.get();
    own_sql::with_lock_timeout(|| {
        own_sql::with_settings(&[("search_path", "pg_catalog, pg_temp".into())], || {
            drain_batch(schema, floor, batch_size, max_entries)
        })
    })
}

/// Drains until the queue is empty or `max_seconds` have passed (at least one batch); returns the
/// number of events processed. Each batch runs in a subtransaction: when one fails (a migration's
/// lock on the queue outlasting lock_timeout) the call stops with a WARNING and keeps the batches
/// it finished, which commit with the caller's transaction.
pub fn drain(schema: &str, batch_size: i32, max_seconds: i32) -> i64 {
    let started = std::time::Instant::now();
    let budget = std::time::Duration::from_secs(max_seconds as u64);
    let mut cursor = Some(drain::Cursor::START);
    let mut total = 0i64;
    while let Some(at) = cursor {
        let s = schema.to_string();
        match own_sql::in_subtransaction(move || drain_step(&s, at.floor, batch_size)) {
            Ok(b) => {
                warn_rejected(&b);
                total += b.events_done;
                cursor = drain::next(at, batch_size as i64, &b);
            }
            Err(e) => {
                pgrx::warning!(
                    "pg_runbook: drain stopped early after {total} event(s), which are kept: {e}"
                );
                break;
            }
        }
        if started.elapsed() >= budget {
            break;
        }
        pgrx::check_for_interrupts!();
    }
    total
}

/// Tells a caller of the drain about malformed events (the worker records them in
/// worker_status instead).
fn warn_rejected(b: &BatchOutcome) {
    if b.rejected > 0 {
        pgrx::warning!(
            "pg_runbook: moved {} malformed cache invalidation event(s) to cache_invalidation_rejected",
            b.rejected
        );
    }
}

fn valid_batch_size(batch_size: Option<i32>) -> i32 {
    let batch_size = error::required("batch_size", batch_size);
    if !(1..=MAX_BATCH).contains(&batch_size) {
        error::invalid_argument(
            "batch_size",
            format!("must be between 1 and {MAX_BATCH}, got {batch_size}"),
        );
    }
    batch_size
}

/// Processes queued invalidations: each batch of `batch_size` events is claimed with FOR UPDATE
/// SKIP LOCKED, the entries they name are deleted, and so are the events. Stops when the queue is
/// empty or `max_seconds` have passed; returns the number of events processed. The whole call is
/// the caller's one transaction: for a large drain use the procedure
/// drain_cache_invalidation_queue_batches, which commits each batch.
#[pg_extern(volatile)]
fn drain_cache_invalidation_queue(
    batch_size: default!(Option<i32>, 100),
    max_seconds: default!(Option<i32>, 60),
) -> i64 {
    let batch_size = valid_batch_size(batch_size);
    let max_seconds = error::required("max_seconds", max_seconds);
    if max_seconds < 0 {
        error::invalid_argument(
            "max_seconds",
            format!("must not be negative, got {max_seconds}"),
        );
    }
    let schema = own_sql::ext_schema();
    drain(&schema, batch_size, max_seconds)
}

/// One batch of the drain, for the drain procedure's loop (which commits after each): claims
/// events with id above `after_id` and returns the events finished, where the next batch starts
/// (NULL when the drain is over) and whether the drain has progressed since it last started
/// over (the procedure passes it back with the next call).
#[pg_extern(volatile)]
fn drain_cache_invalidation_batch(
    batch_size: Option<i32>,
    after_id: Option<i64>,
    progressed: default!(Option<bool>, false),
) -> TableIterator<
    'static,
    (
        name!(events, i64),
        name!(next_after_id, Option<i64>),
        name!(progressed, bool),
    ),
> {
    let batch_size = valid_batch_size(batch_size);
    let after_id = error::required("after_id", after_id);
    if after_id < 0 {
        error::invalid_argument("after_id", format!("must not be negative, got {after_id}"));
    }
    let cursor = drain::Cursor {
        floor: after_id,
        progressed: error::required("progressed", progressed),
    };
    let schema = own_sql::ext_schema();
    let b = drain_step(&schema, after_id, batch_size);
    warn_rejected(&b);
    let next = drain::next(cursor, batch_size as i64, &b);
    TableIterator::once((
        b.events_done,
        next.map(|c| c.floor),
        next.is_some_and(|c| c.progressed),
    ))
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
    let schema = own_sql::ext_schema();
    let candidates = own_sql::as_extension_owner(|| {
        own_sql::select(
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
    let prewarm = own_sql::select(
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
        let outcome = own_sql::in_subtransaction(move || warm_one(&s, candidate, p.as_deref()));
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
    own_sql::as_role(c.owner, true, || {
        own_sql::with_settings(&[("search_path", c.search_path.clone())], || {
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
        own_sql::select(&sql, &[name.as_str().into()], |_| ());
    }
}

/// The tables and indexes the plan of a (checked) query reads, qualified; planned under the
/// current search_path, inside the query guard.
fn relations_read_by(query: &str) -> Vec<String> {
    let plan = Spi::connect(|client| {
        let rows = own_sql::spi(
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
    "../../sql/cache.sql",
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
        drain_cache_invalidation_batch,
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
