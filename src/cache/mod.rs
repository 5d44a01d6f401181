//! The query-result cache. It owns the tables `query_cache`, `query_cache_stale`,
//! `cache_invalidation_queue` and `cache_invalidation_rejected` (sql/cache.sql) and their SQL API:
//!
//! - `store`: entries under a key, owned by the role that stored them (`cache_put`, `cache_get`,
//!   `cached_query`, `clean_expired_cache`);
//! - `queue`: the invalidation queue and its triggers (`invalidate_cache*`,
//!   `cache_invalidate_on_change`, `cache_invalidate_off`);
//! - `drain`: the one drain loop of the queue, for the SQL function, the procedure and the worker;
//! - `warm`: `warm_cache_top_queries`; `stats`: `cache_stats`;
//! - `at_commit`: what is published when a transaction commits (the worker's wake-up, the
//!   drained-events counter).
//!
//! It offers the others `drain::{one_batch_if_installed, drain_batches}` and
//! `store::clean_expired_cache`, which the background worker runs. Its counters and the worker's
//! latch live in `crate::shmem`.

mod at_commit;
pub mod drain;
mod queue;
mod stats;
pub mod store;
mod warm;

use crate::error;
use crate::own_sql;
use pgrx::PgOid;
use pgrx::prelude::*;

/// The OID of the `text` type, for the arguments of prepared statements.
fn text_type() -> PgOid {
    PgOid::BuiltIn(PgBuiltInOids::TEXTOID)
}

/// The OID of the `text[]` type.
fn text_array_type() -> PgOid {
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
