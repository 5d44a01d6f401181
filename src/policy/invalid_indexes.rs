//! What an invalid index is and what to do about it, for every check that reports one (the
//! preflight's `invalid_indexes`, the migration checks' leftovers): an index of an application
//! table that is not valid or not ready, whether its build failed or is still running, and the
//! statements that make it valid again (which depend on the kind of index: a partitioned table's,
//! a constraint's, a unique one).

use crate::own_sql::{self, col, quote_ident};
use crate::policy::app_objects;
use pgrx::prelude::*;
use runbook_core::schema;

/// An index that is not valid and ready, with what the advice needs.
pub struct InvalidIndex {
    pub oid: pg_sys::Oid,
    pub name: String,
    pub valid: bool,
    pub ready: bool,
    pub builder: Option<i32>,
    pub phase: Option<String>,
    /// The index of a partitioned table (relkind 'I').
    pub partitioned: bool,
    pub definition: String,
    /// The table (quoted, qualified), and the constraint (quoted name, definition) it backs.
    pub table: String,
    pub constraint: Option<(String, String)>,
}

/// Every invalid or not-ready index of an application table, failed builds and builds still
/// running alike, ordered by name.
pub fn all() -> Vec<InvalidIndex> {
    let sql = format!(
        "SELECT i.indexrelid, pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' \
                    OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname), \
                i.indisvalid, i.indisready, p.pid, p.phase, c.relkind OPERATOR(pg_catalog.=) 'I', \
                pg_catalog.pg_get_indexdef(i.indexrelid), \
                pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' \
                    OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.relname), \
                pg_catalog.quote_ident(con.conname), pg_catalog.pg_get_constraintdef(con.oid) \
         FROM pg_catalog.pg_index i \
         JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid \
         JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) i.indrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         LEFT JOIN pg_catalog.pg_stat_progress_create_index p \
                ON p.index_relid OPERATOR(pg_catalog.=) i.indexrelid \
         LEFT JOIN pg_catalog.pg_constraint con ON con.conindid OPERATOR(pg_catalog.=) i.indexrelid \
                AND con.conrelid OPERATOR(pg_catalog.=) i.indrelid \
                AND con.contype OPERATOR(pg_catalog.=) ANY ('{{p,u,x}}'::\"char\"[]) \
         WHERE NOT (i.indisvalid AND i.indisready) AND {} ORDER BY 2",
        app_objects::relation("n", "i.indrelid")
    );
    own_sql::with_settings(&[("search_path", "pg_catalog, pg_temp".into())], || {
        own_sql::select(&sql, &[], |r| InvalidIndex {
            oid: col::<pg_sys::Oid>(r, 1).unwrap_or(pg_sys::InvalidOid),
            name: col::<String>(r, 2).unwrap_or_default(),
            valid: col::<bool>(r, 3).unwrap_or(false),
            ready: col::<bool>(r, 4).unwrap_or(false),
            builder: col::<i32>(r, 5),
            phase: col::<String>(r, 6),
            partitioned: col::<bool>(r, 7).unwrap_or(false),
            definition: col::<String>(r, 8).unwrap_or_default(),
            table: col::<String>(r, 9).unwrap_or_default(),
            constraint: col::<String>(r, 10).zip(col::<String>(r, 11)),
        })
    })
}

/// For an invalid index of a partitioned table (made `ON ONLY` the parent, or by `ALTER TABLE
/// ONLY ... ADD PRIMARY KEY`), the statements that make it valid: for each partition that has
/// no index attached to it, attach the partition's matching index, building it first when there
/// is none. DROP INDEX CONCURRENTLY is refused on such an index (0A000), and dropping it
/// loses the definition the migration wanted.
fn attach_partitions_advice(ix: &InvalidIndex) -> Vec<String> {
    let sql = "SELECT pg_catalog.quote_ident(pn.nspname), pc.relname::text, pc.relkind OPERATOR(pg_catalog.=) 'r', \
            (SELECT pg_catalog.quote_ident(xn.nspname) OPERATOR(pg_catalog.||) '.' \
                        OPERATOR(pg_catalog.||) pg_catalog.quote_ident(xc.relname) \
             FROM pg_catalog.pg_index x \
             JOIN pg_catalog.pg_class xc ON xc.oid OPERATOR(pg_catalog.=) x.indexrelid \
             JOIN pg_catalog.pg_namespace xn ON xn.oid OPERATOR(pg_catalog.=) xc.relnamespace \
             WHERE x.indrelid OPERATOR(pg_catalog.=) pc.oid \
               AND x.indisunique OPERATOR(pg_catalog.=) pi.indisunique \
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h2 \
                               WHERE h2.inhrelid OPERATOR(pg_catalog.=) x.indexrelid) \
               AND pg_catalog.substring(pg_catalog.pg_get_indexdef(x.indexrelid), ' USING .*$') \
                   OPERATOR(pg_catalog.=) pg_catalog.substring(pg_catalog.pg_get_indexdef(pi.indexrelid), ' USING .*$') \
               AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint xk \
                           WHERE xk.conindid OPERATOR(pg_catalog.=) x.indexrelid \
                             AND xk.conrelid OPERATOR(pg_catalog.=) pc.oid) \
                   OPERATOR(pg_catalog.=) $2 \
             ORDER BY 1 LIMIT 1) \
     FROM pg_catalog.pg_index pi \
     JOIN pg_catalog.pg_inherits ht ON ht.inhparent OPERATOR(pg_catalog.=) pi.indrelid \
     JOIN pg_catalog.pg_class pc ON pc.oid OPERATOR(pg_catalog.=) ht.inhrelid \
     JOIN pg_catalog.pg_namespace pn ON pn.oid OPERATOR(pg_catalog.=) pc.relnamespace \
     WHERE pi.indexrelid OPERATOR(pg_catalog.=) $1 \
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits hi \
                       JOIN pg_catalog.pg_index ci ON ci.indexrelid OPERATOR(pg_catalog.=) hi.inhrelid \
                       WHERE hi.inhparent OPERATOR(pg_catalog.=) pi.indexrelid \
                         AND ci.indrelid OPERATOR(pg_catalog.=) pc.oid) \
     ORDER BY 1, 2";
    let parts = own_sql::with_settings(&[("search_path", "pg_catalog, pg_temp".into())], || {
        own_sql::select(sql, &[ix.oid.into(), ix.constraint.is_some().into()], |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<String>(r, 2).unwrap_or_default(),
                col::<bool>(r, 3).unwrap_or(false),
                col::<String>(r, 4),
            )
        })
    });
    let mut out = Vec::new();
    for (schema, partition, leaf, candidate) in parts {
        let attach = |index: &str| format!("ALTER INDEX {} ATTACH PARTITION {index}", ix.name);
        if let Some(candidate) = candidate {
            out.push(attach(&candidate));
            continue;
        }
        let new_name = schema::partition_index_name(&partition, &ix.name_only());
        let target = format!("{schema}.{}", quote_ident(&partition));
        match &ix.constraint {
            // A constraint's index attaches only an index that backs the same kind of constraint.
            Some((_, def)) => out.push(format!(
                "ALTER TABLE {target} ADD CONSTRAINT {} {def}",
                quote_ident(&new_name)
            )),
            None => out.push(schema::partition_index_definition(
                &ix.definition,
                &quote_ident(&new_name),
                &target,
                leaf,
            )),
        }
        out.push(attach(&format!("{schema}.{}", quote_ident(&new_name))));
    }
    out
}

impl InvalidIndex {
    /// The index's own name, unquoted.
    fn name_only(&self) -> String {
        own_sql::select_one(
            "SELECT relname::text FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1",
            &[self.oid.into()],
            |r| col::<String>(r, 1).unwrap_or_default(),
        )
    }

    /// What to run so that the index is valid again, as statements to run one by one.
    pub fn advice(&self) -> (String, Vec<String>) {
        if self.partitioned {
            let statements = attach_partitions_advice(self);
            let why = "the index of a partitioned table lacks the index of some partitions \
                       (created ON ONLY the parent or by ALTER TABLE ONLY); attach them";
            return (why.into(), statements);
        }
        if let Some((name, def)) = &self.constraint {
            // An index that backs a constraint cannot be dropped by itself (2BP01).
            let why = "the index backs a constraint: drop and add the constraint again";
            return (
                why.into(),
                vec![schema::readd_constraint(&self.table, name, def)],
            );
        }
        let drop = format!("DROP INDEX CONCURRENTLY IF EXISTS {}", self.name);
        let build = schema::concurrent_index_definition(&self.definition, false);
        if self.definition.starts_with("CREATE UNIQUE INDEX ") {
            // A unique build usually fails on duplicate keys: building it again before they
            // are mended would fail the same way.
            let why = format!(
                "a concurrent build failed or was cancelled; once the keys are unique, build it \
                 again with {build}"
            );
            return (why, vec![drop]);
        }
        let why = "a concurrent build failed or was cancelled; drop it and build it again";
        (why.into(), vec![drop, build])
    }
}
