//! Warming: `warm_cache_top_queries` runs the most-hit expired or invalidated queries again, each
//! as the role that stored it and through the read-only query guard, and prewarms the relations
//! they read when pg_prewarm is installed.

use super::store::{StoredQuery, current_role, rows_as_jsonb, store};
use crate::jsonb_datum::RawJsonb;
use crate::own_sql::{self, col, quote_ident};
use crate::{error, policy::query_guard};
use pgrx::prelude::*;
use runbook_core::explain;

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
    // EXPLAIN is a utility statement: SPI runs it only in read-write mode (a read-only call is
    // refused as "not allowed in a non-volatile function"). The query guard keeps the
    // transaction itself read-only.
    let plan = Spi::connect_mut(|client| {
        let rows = own_sql::spi(
            "planning the cached query",
            client.update(
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
        let scans = explain::top_plan(&plan.0).map(explain::scans);
        for scan in scans.into_iter().flatten() {
            let Some(schema) = scan.schema else { continue };
            for name in [scan.relation, scan.index].into_iter().flatten() {
                names.push(format!("{}.{}", quote_ident(&schema), quote_ident(&name)));
            }
        }
    }
    names.sort();
    names.dedup();
    names
}
