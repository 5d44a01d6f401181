//! The query-result cache (`query_cache`, `cache_put`, `cache_get`, `cached_query`), its
//! invalidation queue (`invalidate_cache*`, statement-level triggers, and
//! `drain_cache_invalidation_queue`), `warm_cache_top_queries` and `cache_stats`.
//!
//! The drain is the one unit of work the background worker runs too: `drain_batch` claims up to
//! n events with FOR UPDATE SKIP LOCKED and deletes them and the entries they name in one
//! set-based statement, through a plan prepared once per backend.

use crate::catalog::{self, col, quote_ident, quote_literal};
use crate::error;
use crate::worker;
use pgrx::JsonB;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{PgList, PgOid, PgRelation};
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

/// The live result for key, counting the hit; `None` when missing or expired.
fn lookup(schema: &str, key: &str) -> Option<JsonB> {
    let sql = format!(
        "UPDATE {schema}.query_cache SET hits = hits + 1, last_hit_at = now() \
         WHERE cache_key = $1 AND (expires_at IS NULL OR expires_at > now()) RETURNING result"
    );
    let found = catalog::run_prepared(&sql, &[text()], &[key.into()], |r| col::<JsonB>(r, 1));
    match found.into_iter().next() {
        Some(result) => {
            worker::note_cache_hit();
            Some(result.unwrap_or(JsonB(serde_json::Value::Null)))
        }
        None => None,
    }
}

/// Stores an entry; `query_sql` is kept when the entry was computed by cached_query, and its
/// stale twin (from an earlier invalidation) is then forgotten.
fn store(
    schema: &str,
    key: &str,
    result: JsonB,
    query_sql: Option<&str>,
    ttl: Option<Interval>,
    tags: &[String],
    hits: i64,
) {
    let sql = format!(
        "WITH put AS ( \
           INSERT INTO {schema}.query_cache AS c (cache_key, result, query_sql, tags, created_at, expires_at, hits) \
           VALUES ($1, $2, $3, $5, now(), now() + $4, $6) \
           ON CONFLICT (cache_key) DO UPDATE SET result = excluded.result, query_sql = excluded.query_sql, \
             tags = excluded.tags, created_at = excluded.created_at, expires_at = excluded.expires_at \
           RETURNING 1) \
         DELETE FROM {schema}.query_cache_stale WHERE $3 IS NOT NULL AND cache_key = $1"
    );
    let types = [
        text(),
        PgOid::BuiltIn(PgBuiltInOids::JSONBOID),
        text(),
        PgOid::BuiltIn(PgBuiltInOids::INTERVALOID),
        text_array(),
        PgOid::BuiltIn(PgBuiltInOids::INT8OID),
    ];
    let query: DatumWithOid = match query_sql {
        Some(q) => q.into(),
        None => DatumWithOid::null::<&str>(),
    };
    let ttl: DatumWithOid = match ttl {
        Some(t) => t.into(),
        None => DatumWithOid::null::<Interval>(),
    };
    let args = [
        key.into(),
        result.into(),
        query,
        ttl,
        tags.to_vec().into(),
        hits.into(),
    ];
    catalog::run_prepared(&sql, &types, &args, |_| ());
}

/// Stores `result` under `key` for `ttl`, with `tags` for invalidation by tag.
#[pg_extern(volatile)]
fn cache_put(
    key: Option<&str>,
    result: Option<JsonB>,
    ttl: Option<Interval>,
    tags: default!(Option<Vec<Option<String>>>, "'{}'"),
) {
    let key = valid_key(key);
    let result = error::required("result", result);
    let ttl = valid_ttl(ttl);
    let tags = valid_tags(tags);
    let schema = catalog::ext_schema();
    store(&schema, key, result, None, Some(ttl), &tags, 0);
}

/// The cached result for `key`, or NULL when it is missing or expired.
#[pg_extern(volatile)]
fn cache_get(key: Option<&str>) -> Option<JsonB> {
    let key = valid_key(key);
    let schema = catalog::ext_schema();
    let found = lookup(&schema, key);
    if found.is_none() {
        worker::note_cache_miss();
    }
    found
}

/// The query text without trailing semicolons, or 22023 unless it is one plain SELECT (no
/// SELECT INTO, no FOR UPDATE, no data-modifying WITH).
fn read_only_query(query: &str) -> String {
    let trimmed = query
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
        .to_string();
    let owned = trimmed.clone();
    let verdict = catalog::in_subtransaction(move || unsafe { classify(&owned) });
    match verdict {
        Err(syntax) => error::invalid_argument("query", syntax),
        Ok(Err(why)) => error::invalid_argument("query", why),
        Ok(Ok(())) => trimmed,
    }
}

unsafe fn classify(query: &str) -> Result<(), String> {
    let c = std::ffi::CString::new(query).map_err(|_| "contains a NUL byte".to_string())?;
    let list = unsafe { pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT) };
    let stmts = unsafe { PgList::<pg_sys::RawStmt>::from_pg(list) };
    if stmts.len() != 1 {
        return Err(format!(
            "must be exactly one statement, got {}",
            stmts.len()
        ));
    }
    let raw = stmts.get_ptr(0).ok_or("must be exactly one statement")?;
    let node = unsafe { (*raw).stmt };
    if node.is_null() || unsafe { (*node).type_ } != pg_sys::NodeTag::T_SelectStmt {
        return Err("must be a read-only SELECT".into());
    }
    let select = node as *mut pg_sys::SelectStmt;
    unsafe {
        if !(*select).intoClause.is_null() {
            return Err("SELECT INTO writes a table; must be a read-only SELECT".into());
        }
        if !(*select).lockingClause.is_null() {
            return Err("FOR UPDATE/SHARE locks rows; must be a read-only SELECT".into());
        }
        if !(*select).withClause.is_null() {
            let ctes = PgList::<pg_sys::CommonTableExpr>::from_pg((*(*select).withClause).ctes);
            for cte in ctes.iter_ptr() {
                let q = (*cte).ctequery;
                if !q.is_null() && (*q).type_ != pg_sys::NodeTag::T_SelectStmt {
                    return Err(
                        "a data-modifying WITH query writes; must be a read-only SELECT".into(),
                    );
                }
            }
        }
    }
    Ok(())
}

/// Runs the caller's query and returns its rows as a jsonb array.
fn compute(query: &str) -> JsonB {
    let sql =
        format!("SELECT coalesce(jsonb_agg(to_jsonb(q)), '[]'::jsonb) FROM (\n{query}\n) AS q");
    let result = Spi::connect_mut(|client| {
        let rows = catalog::spi(
            "running the cached query",
            client.update(sql.as_str(), None, &[]),
        );
        rows.into_iter().next().and_then(|r| col::<JsonB>(&r, 1))
    });
    result.unwrap_or(JsonB(serde_json::json!([])))
}

/// The cached result for `key`, or the rows of the read-only `query` (run as the caller), cached
/// for `ttl` with `tags`. Concurrent misses on one key run the query once: the others wait on a
/// transaction-level advisory lock and then read the first caller's result.
#[pg_extern(volatile)]
fn cached_query(
    key: Option<&str>,
    query: Option<&str>,
    ttl: Option<Interval>,
    tags: default!(Option<Vec<Option<String>>>, "'{}'"),
) -> JsonB {
    let key = valid_key(key);
    let query = read_only_query(error::required("query", query));
    let ttl = valid_ttl(ttl);
    let tags = valid_tags(tags);
    let schema = catalog::ext_schema();
    if let Some(hit) = lookup(&schema, key) {
        return hit;
    }
    catalog::run_prepared(
        "SELECT pg_catalog.pg_advisory_xact_lock($1, pg_catalog.hashtext($2))",
        &[PgOid::BuiltIn(PgBuiltInOids::INT4OID), text()],
        &[FILL_LOCK_CLASS.into(), key.into()],
        |_| (),
    );
    if let Some(hit) = lookup(&schema, key) {
        return hit;
    }
    worker::note_cache_miss();
    let result = compute(&query);
    store(
        &schema,
        key,
        JsonB(result.0.clone()),
        Some(&query),
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
    let (entries, expired, depth, oldest) = catalog::select_one(
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
    );
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
                worker::wake(unsafe { pg_sys::MyDatabaseId });
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
    tbl: Option<PgRelation>,
    tags: Option<Vec<Option<String>>>,
) -> String {
    let rel = error::required("tbl", tbl);
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
fn cache_invalidate_off(tbl: Option<PgRelation>) -> bool {
    let rel = error::required("tbl", tbl);
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
           RETURNING c.cache_key, c.query_sql, c.tags, c.expires_at OPERATOR(pg_catalog.-) c.created_at AS ttl, c.hits), \
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
           INSERT INTO {schema}.query_cache_stale AS s (cache_key, query_sql, tags, ttl, hits) \
           SELECT DISTINCT ON (cache_key) cache_key, query_sql, tags, ttl, hits \
           FROM gone WHERE query_sql IS NOT NULL ORDER BY cache_key \
           ON CONFLICT (cache_key) DO UPDATE SET query_sql = excluded.query_sql, tags = excluded.tags, \
             ttl = excluded.ttl, hits = greatest(s.hits, excluded.hits), invalidated_at = pg_catalog.now() \
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
    let outcome = catalog::run_prepared(
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
    catalog::with_lock_timeout(|| {
        catalog::with_settings(&[("search_path", "pg_catalog, pg_temp".into())], || {
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
    let mut floor = Some(0i64);
    let mut total = 0i64;
    while let Some(at) = floor {
        let s = schema.to_string();
        match catalog::in_subtransaction(move || drain_step(&s, at, batch_size)) {
            Ok(b) => {
                warn_rejected(&b);
                total += b.events_done;
                floor = drain::next_floor(at, batch_size as i64, &b);
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
    let schema = catalog::ext_schema();
    drain(&schema, batch_size, max_seconds)
}

/// One batch of the drain, for the drain procedure's loop (which commits after each): claims
/// events with id above `after_id` and returns the events finished and where the next batch
/// starts (NULL when the drain is over).
#[pg_extern(volatile)]
fn drain_cache_invalidation_batch(
    batch_size: Option<i32>,
    after_id: Option<i64>,
) -> TableIterator<'static, (name!(events, i64), name!(next_after_id, Option<i64>))> {
    let batch_size = valid_batch_size(batch_size);
    let after_id = error::required("after_id", after_id);
    if after_id < 0 {
        error::invalid_argument("after_id", format!("must not be negative, got {after_id}"));
    }
    let schema = catalog::ext_schema();
    let b = drain_step(&schema, after_id, batch_size);
    warn_rejected(&b);
    TableIterator::once((
        b.events_done,
        drain::next_floor(after_id, batch_size as i64, &b),
    ))
}

// ---- warming ---------------------------------------------------------------------------------

/// Recomputes the `n` most-hit cached queries that are expired or were invalidated, and, when
/// pg_prewarm is installed, loads the relations they read into shared buffers. Returns how many
/// entries were warmed; a query that fails is reported in a WARNING and skipped.
#[pg_extern(volatile)]
fn warm_cache_top_queries(n: default!(Option<i32>, 20)) -> i64 {
    let n = error::required("n", n);
    if n < 0 {
        error::invalid_argument("n", format!("must not be negative, got {n}"));
    }
    let schema = catalog::ext_schema();
    let candidates = catalog::select(
        &format!(
            "SELECT cache_key, query_sql, tags, ttl, hits FROM ( \
               SELECT cache_key, query_sql, tags, expires_at - created_at AS ttl, hits \
               FROM {schema}.query_cache WHERE query_sql IS NOT NULL AND expires_at <= now() \
               UNION ALL \
               SELECT s.cache_key, s.query_sql, s.tags, s.ttl, s.hits FROM {schema}.query_cache_stale s \
               WHERE NOT EXISTS (SELECT 1 FROM {schema}.query_cache c WHERE c.cache_key = s.cache_key \
                                 AND (c.expires_at IS NULL OR c.expires_at > now()))) x \
             ORDER BY hits DESC, cache_key LIMIT $1"
        ),
        &[(n as i64).into()],
        |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<String>(r, 2).unwrap_or_default(),
                col::<Vec<String>>(r, 3).unwrap_or_default(),
                col::<Interval>(r, 4),
                col::<i64>(r, 5).unwrap_or(0),
            )
        },
    );
    let prewarm = catalog::select(
        "SELECT n.nspname::text FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n \
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
    for (key, query, tags, ttl, hits) in candidates {
        let (s, p) = (schema.clone(), prewarm.clone());
        let outcome = catalog::in_subtransaction(move || {
            let result = compute(&query);
            store(&s, &key, result, Some(&query), ttl, &tags, hits);
            if let Some(p) = p {
                prewarm_relations(&p, &query);
            }
            key
        });
        match outcome {
            Ok(_) => warmed += 1,
            Err(e) => pgrx::warning!("pg_runbook: could not warm a cached query: {e}"),
        }
    }
    warmed
}

/// Loads the tables and indexes a query's plan reads into shared buffers with pg_prewarm.
fn prewarm_relations(prewarm_schema: &str, query: &str) {
    let plan = catalog::select(
        &format!("EXPLAIN (FORMAT JSON, VERBOSE) {query}"),
        &[],
        |r| col::<pgrx::Json>(r, 1),
    )
    .into_iter()
    .flatten()
    .next();
    let mut names = Vec::new();
    if let Some(plan) = plan {
        collect_relations(&plan.0, &mut names);
    }
    names.sort();
    names.dedup();
    let sql = format!(
        "SELECT {}.pg_prewarm(c) FROM pg_catalog.to_regclass($1) AS c WHERE c IS NOT NULL",
        quote_ident(prewarm_schema)
    );
    for name in names {
        catalog::select(&sql, &[name.as_str().into()], |_| ());
    }
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
