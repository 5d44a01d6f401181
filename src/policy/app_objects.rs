//! What counts as an application object, for every check that looks at "the application's
//! schema": a relation in a schema that is not the system's (pg_catalog, information_schema, the
//! TOAST schemas, other sessions' temporary schemas) and that is not a member of an extension
//! (objects an extension manages, pg_runbook's own tables included, are its business).
//!
//! The conditions are SQL fragments for the catalog queries of the checks, written with
//! pg_catalog-qualified operators like every statement the extension runs.

/// SQL condition: the schema `ns` (an alias of pg_namespace) is an application schema.
pub fn schema(ns: &str) -> String {
    format!(
        "{ns}.nspname OPERATOR(pg_catalog.<>) ALL ('{{pg_catalog,information_schema}}'::pg_catalog.name[]) \
         AND {ns}.nspname OPERATOR(pg_catalog.!~~) 'pg\\_toast%' \
         AND {ns}.nspname OPERATOR(pg_catalog.!~~) 'pg\\_temp\\_%'"
    )
}

/// SQL condition: the relation whose oid is `rel_oid` (an SQL expression) is not a member of an
/// extension.
pub fn not_extension_member(rel_oid: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend ext_dep \
                     WHERE ext_dep.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
                       AND ext_dep.objid OPERATOR(pg_catalog.=) {rel_oid} \
                       AND ext_dep.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass \
                       AND ext_dep.deptype OPERATOR(pg_catalog.=) 'e')"
    )
}

/// SQL condition: the relation `rel_oid` in the schema `ns` (an alias of pg_namespace) is an
/// application relation.
pub fn relation(ns: &str, rel_oid: &str) -> String {
    format!("{} AND {}", schema(ns), not_extension_member(rel_oid))
}
