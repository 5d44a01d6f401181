//! The materialized views a refresh or a check works on: what the catalog says of each
//! (`ViewInfo`), the argument filters that select them, the dependencies among them, and the
//! refresh plan (the views in dependency order with the edges between them). Every query here
//! runs as the caller, so every function and operator is pg_catalog-qualified: a role may have
//! planted `public.=(oid, oid)` in the caller's search_path.

use crate::error;
use crate::own_sql::{self, col, quote_ident};
use pgrx::prelude::*;

/// A materialized view as the catalog describes it now.
#[derive(Debug, Clone)]
pub struct ViewInfo {
    pub oid: pg_sys::Oid,
    pub schema: String,
    pub name: String,
    pub populated: bool,
    /// A unique index REFRESH ... CONCURRENTLY can use.
    pub unique_index: Option<String>,
    /// Unique indexes it cannot use, each with the reason.
    pub unusable: Vec<String>,
    /// Whether the current role may refresh it (owns it, or is a member of its owner role).
    pub may_refresh: bool,
    pub owner: String,
}

impl ViewInfo {
    /// schema.name as a DBA reads it (quoted only where needed).
    pub fn display(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// What PostgreSQL's REFRESH ... CONCURRENTLY accepts (is_usable_unique_index in matview.c): a
/// unique, immediate, valid btree index without a predicate whose keys are plain columns.
const USABLE_FOR_CONCURRENTLY: &str = "i.indisunique AND i.indimmediate AND i.indisvalid AND i.indpred IS NULL \
                      AND i.indexprs IS NULL AND am.amname OPERATOR(pg_catalog.=) 'btree'";

/// The query describing every materialized view that meets `condition` (a WHERE clause on
/// `c` pg_class and `n` pg_namespace), one row per view in the shape `view_from_row` reads.
fn view_query(condition: &str) -> String {
    format!(
        "SELECT c.oid, n.nspname::pg_catalog.text, c.relname::pg_catalog.text, c.relispopulated, \
           (SELECT ic.relname::pg_catalog.text FROM pg_catalog.pg_index i \
              JOIN pg_catalog.pg_class ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid \
              JOIN pg_catalog.pg_am am ON am.oid OPERATOR(pg_catalog.=) ic.relam \
            WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND {USABLE_FOR_CONCURRENTLY} ORDER BY ic.relname LIMIT 1), \
           ARRAY(SELECT ic.relname::pg_catalog.text OPERATOR(pg_catalog.||) \
                          CASE WHEN NOT i.indisvalid THEN ' is not valid' \
                               WHEN i.indpred IS NOT NULL THEN ' is partial' \
                               WHEN i.indexprs IS NOT NULL THEN ' indexes an expression' \
                               WHEN am.amname OPERATOR(pg_catalog.<>) 'btree' THEN ' is not a btree index' \
                               ELSE ' is deferrable' END \
                 FROM pg_catalog.pg_index i \
                 JOIN pg_catalog.pg_class ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid \
                 JOIN pg_catalog.pg_am am ON am.oid OPERATOR(pg_catalog.=) ic.relam \
                 WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND i.indisunique AND NOT ({USABLE_FOR_CONCURRENTLY}) ORDER BY 1), \
           pg_catalog.pg_has_role(c.relowner, 'USAGE'), \
           pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE c.relkind OPERATOR(pg_catalog.=) 'm' AND {condition} ORDER BY 2, 3"
    )
}

fn view_from_row(r: &pgrx::spi::SpiHeapTupleData) -> ViewInfo {
    ViewInfo {
        oid: col::<pg_sys::Oid>(r, 1).unwrap_or(pg_sys::InvalidOid),
        schema: col::<String>(r, 2).unwrap_or_default(),
        name: col::<String>(r, 3).unwrap_or_default(),
        populated: col::<bool>(r, 4).unwrap_or(false),
        unique_index: col::<String>(r, 5),
        unusable: col::<Vec<String>>(r, 6).unwrap_or_default(),
        may_refresh: col::<bool>(r, 7).unwrap_or(false),
        owner: col::<String>(r, 8).unwrap_or_default(),
    }
}

/// The argument filters: LIKE patterns on the schema and the view's name.
pub struct Filter {
    schema_pattern: String,
    name_pattern: String,
}

impl Filter {
    /// The filters from the functions' arguments, validated: NULL is refused (22023), and a
    /// schema pattern that matches no schema is a mistake (22023), not an empty result, so a typo
    /// in a deploy script does not pass silently.
    pub fn validated(schema_pattern: Option<&str>, name_pattern: Option<&str>) -> Filter {
        let schema_pattern = error::required("schema_pattern", schema_pattern).to_string();
        let name_pattern = error::required("name_pattern", name_pattern).to_string();
        let exists = own_sql::select_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace \
             WHERE nspname::pg_catalog.text OPERATOR(pg_catalog.~~) $1)",
            &[schema_pattern.as_str().into()],
            |r| col::<bool>(r, 1).unwrap_or(false),
        );
        if !exists {
            error::invalid_argument(
                "schema_pattern",
                format!("no schema matches \"{schema_pattern}\""),
            );
        }
        Filter {
            schema_pattern,
            name_pattern,
        }
    }

    /// Every materialized view outside pg_catalog and information_schema.
    pub fn everything() -> Filter {
        Filter {
            schema_pattern: "%".into(),
            name_pattern: "%".into(),
        }
    }
}

/// The materialized views matching `f`, by schema and name.
pub fn views_matching(f: &Filter) -> Vec<ViewInfo> {
    let sql = view_query(
        "n.nspname::pg_catalog.text OPERATOR(pg_catalog.~~) $1 \
         AND c.relname::pg_catalog.text OPERATOR(pg_catalog.~~) $2 \
         AND n.nspname OPERATOR(pg_catalog.<>) ALL ('{pg_catalog,information_schema}'::pg_catalog.name[])",
    );
    own_sql::select(
        &sql,
        &[
            f.schema_pattern.as_str().into(),
            f.name_pattern.as_str().into(),
        ],
        view_from_row,
    )
}

/// The materialized views with these oids, as they are now (the worker re-reads them).
pub fn views_by_oid(oids: &[pg_sys::Oid]) -> Vec<ViewInfo> {
    own_sql::select(
        &view_query("c.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])"),
        &[oid_array(oids).into()],
        view_from_row,
    )
}

/// Oids as the int8[] the queries here take (SPI has no oid[] argument type in pgrx).
pub fn oid_array(oids: &[pg_sys::Oid]) -> Vec<i64> {
    oids.iter().map(|o| o.to_u32() as i64).collect()
}

/// A recursive WITH clause naming `refs(mv, rel)`: the relations each starting view's query reads,
/// through plain views (a materialized view's rule depends on the views it names, which depend on
/// their tables). `$1` is an int8[] of the views to start from.
pub const VIEW_REFERENCES: &str = "WITH RECURSIVE refs(mv, rel) AS ( \
      SELECT r.ev_class, d.refobjid FROM pg_catalog.pg_rewrite r \
      JOIN pg_catalog.pg_depend d \
        ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
       AND d.objid OPERATOR(pg_catalog.=) r.oid \
       AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
      WHERE r.ev_class OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[]) \
        AND d.refobjid OPERATOR(pg_catalog.<>) r.ev_class \
      UNION \
      SELECT refs.mv, d.refobjid FROM refs \
      JOIN pg_catalog.pg_class v ON v.oid OPERATOR(pg_catalog.=) refs.rel \
       AND v.relkind OPERATOR(pg_catalog.=) 'v' \
      JOIN pg_catalog.pg_rewrite r ON r.ev_class OPERATOR(pg_catalog.=) v.oid \
      JOIN pg_catalog.pg_depend d \
        ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
       AND d.objid OPERATOR(pg_catalog.=) r.oid \
       AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
      WHERE d.refobjid OPERATOR(pg_catalog.<>) v.oid) ";

/// Dependency edges among `views` as index pairs (view, the view it reads).
fn dependency_edges(views: &[ViewInfo]) -> Vec<(usize, usize)> {
    let ids = oid_array(&views.iter().map(|v| v.oid).collect::<Vec<_>>());
    let sql = format!(
        "{VIEW_REFERENCES} SELECT DISTINCT mv::pg_catalog.int8, rel::pg_catalog.int8 FROM refs \
         WHERE rel OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[]) AND rel OPERATOR(pg_catalog.<>) mv"
    );
    let pairs = own_sql::select(&sql, &[ids.clone().into()], |r| {
        (col::<i64>(r, 1).unwrap_or(0), col::<i64>(r, 2).unwrap_or(0))
    });
    let index = |oid: i64| ids.iter().position(|&i| i == oid);
    pairs
        .into_iter()
        .filter_map(|(a, b)| Some((index(a)?, index(b)?)))
        .collect()
}

/// The views of a run in refresh order, and the dependency edges among them as `(view, reads)`
/// index pairs into `views`.
pub struct Plan {
    pub views: Vec<ViewInfo>,
    pub edges: Vec<(usize, usize)>,
}

impl Plan {
    /// `views` in refresh order (each after the views it reads), with the dependency edges among
    /// them. Views on a dependency cycle (which PostgreSQL should never show) come last, with a
    /// WARNING.
    pub fn in_refresh_order(views: Vec<ViewInfo>) -> Plan {
        let edges = dependency_edges(&views);
        let (order, cyclic) = runbook_core::matviews::refresh_order(views.len(), &edges);
        if !cyclic.is_empty() {
            let names: Vec<String> = cyclic.iter().map(|&i| views[i].display()).collect();
            pgrx::warning!(
                "materialized views on a dependency cycle are refreshed last: {}",
                names.join(", ")
            );
        }
        let mut position = vec![0usize; views.len()];
        for (new, &old) in order.iter().enumerate() {
            position[old] = new;
        }
        Plan {
            views: order.iter().map(|&i| views[i].clone()).collect(),
            edges: edges
                .iter()
                .map(|&(view, on)| (position[view], position[on]))
                .collect(),
        }
    }

    /// The plan of the views `f` selects, read under the extension's lock_timeout.
    pub fn of_matching(f: &Filter) -> Plan {
        own_sql::with_lock_timeout(|| Plan::in_refresh_order(views_matching(f)))
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn setup() {
        Spi::run(
            "CREATE SCHEMA mvt; \
             CREATE TABLE mvt.t AS SELECT g AS id, g % 3 AS k FROM generate_series(1, 30) g; \
             CREATE MATERIALIZED VIEW mvt.z_base AS SELECT k, count(*) AS n FROM mvt.t GROUP BY k; \
             CREATE UNIQUE INDEX ON mvt.z_base (k); \
             CREATE VIEW mvt.plain_view AS SELECT * FROM mvt.z_base; \
             CREATE MATERIALIZED VIEW mvt.a_top AS SELECT * FROM mvt.plain_view WHERE n > 1;",
        )
        .unwrap();
    }

    #[pg_test]
    fn a_view_without_a_unique_index_fails_verification() {
        setup();
        let rows: Vec<(String, String, Option<String>)> = Spi::connect(|c| {
            c.select(
                "SELECT matviewname, status, unique_index FROM verify_materialized_view_indexes('mvt') ORDER BY 1",
                None,
                &[],
            )
            .unwrap()
            .map(|r| (r.get(1).unwrap().unwrap(), r.get(2).unwrap().unwrap(), r.get(3).unwrap()))
            .collect()
        });
        assert_eq!(
            rows,
            vec![
                ("a_top".into(), "FAIL".into(), None),
                ("z_base".into(), "PASS".into(), Some("z_base_k_idx".into())),
            ]
        );
    }

    #[pg_test]
    fn a_view_on_a_view_through_a_plain_view_comes_second() {
        setup();
        let f = super::Filter::validated(Some("mvt"), Some("%"));
        let order: Vec<String> = super::Plan::of_matching(&f)
            .views
            .iter()
            .map(|v| v.name.clone())
            .collect();
        assert_eq!(order, vec!["z_base".to_string(), "a_top".to_string()]);
    }
}
