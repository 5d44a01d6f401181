//! Object names that users pass as text (in jsonb expectations, `expect_index`, settings), found
//! as PostgreSQL would find them and, failing that, as the catalog spells them.
//!
//! Runbooks and ORMs copy index names from `pg_indexes.indexname` without quotes
//! (`Scan_dedupe_lookup_idx`). SQL would fold that to lower case and find nothing, and a check
//! would report a present index as missing. So a name is tried as SQL reads it, then as written
//! (runbook-core's `name_spellings`); when neither finds an object, the error or finding names
//! the closest existing names. Unqualified names are looked up in the schemas of the caller's
//! search_path, read once per call, never through the search_path the extension's own queries
//! run under.

use crate::own_sql::{self, col, quote_ident};
use pgrx::prelude::*;
use runbook_core::names::{close_names, name_spellings};

/// The schemas of the caller's search_path, in search order (pg_catalog and the session's
/// temporary schema included where PostgreSQL searches them). Read through SPI directly, not
/// through a query whose search_path the extension pins.
pub fn caller_schemas() -> Vec<String> {
    Spi::get_one::<Vec<String>>("SELECT pg_catalog.current_schemas(true)::pg_catalog.text[]")
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// A relation the user named: found, or not found with the closest names.
pub enum Found {
    Relation(pg_sys::Oid),
    Missing(Vec<String>),
}

impl Found {
    /// `; did you mean "a", app."B"?` or nothing. Suggestions come as the user would write
    /// them: a bare name in double quotes, a qualified one quoted as SQL quotes it.
    pub fn hint(suggestions: &[String]) -> String {
        if suggestions.is_empty() {
            return String::new();
        }
        format!("; did you mean {}?", suggestions.join(", "))
    }
}

/// `relkinds` as an SQL array literal of "char": `'{r,p}'::"char"[]`.
fn kinds(relkinds: &str) -> String {
    format!("'{{{relkinds}}}'::\"char\"[]")
}

/// Finds the relation `name` (`name` or `schema.name`) among the relation kinds `relkinds`
/// (`"r,p"`, `"i,I"`, ...). 22023 naming `arg` when the name does not parse.
pub fn find_relation(arg: &str, name: &str, relkinds: &str) -> Found {
    let spellings =
        name_spellings(name).unwrap_or_else(|why| crate::error::invalid_argument(arg, why));
    let schemas = caller_schemas();
    let sql = format!(
        "SELECT c.oid FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE c.relname OPERATOR(pg_catalog.=) $1 \
           AND c.relkind OPERATOR(pg_catalog.=) ANY ({kinds}) \
           AND CASE WHEN $2::pg_catalog.text IS NULL THEN n.nspname OPERATOR(pg_catalog.=) ANY ($3) \
                    ELSE n.nspname OPERATOR(pg_catalog.=) $2 END \
         ORDER BY pg_catalog.array_position($3, n.nspname::pg_catalog.text) LIMIT 1",
        kinds = kinds(relkinds)
    );
    let split = |parts: &Vec<String>| match parts.as_slice() {
        [s, r] => (Some(s.clone()), r.clone()),
        [r] => (None, r.clone()),
        _ => crate::error::invalid_argument(arg, format!("\"{name}\" must be name or schema.name")),
    };
    for parts in &spellings {
        let (schema, rel) = split(parts);
        let found = own_sql::select(
            &sql,
            &[rel.into(), schema.into(), schemas.clone().into()],
            |r| col::<pg_sys::Oid>(r, 1),
        );
        if let Some(Some(oid)) = found.into_iter().next() {
            return Found::Relation(oid);
        }
    }
    // An unqualified name outside the search_path still means the one object of that name, when
    // there is exactly one (a runbook names `Scan_pkey` whatever schema Prisma put it in).
    let anywhere = format!(
        "SELECT c.oid FROM pg_catalog.pg_class c \
         WHERE c.relname OPERATOR(pg_catalog.=) $1 AND c.relkind OPERATOR(pg_catalog.=) ANY ({kinds})",
        kinds = kinds(relkinds)
    );
    for parts in &spellings {
        if let (None, rel) = split(parts) {
            let found = own_sql::select(&anywhere, &[rel.into()], |r| col::<pg_sys::Oid>(r, 1));
            if let [Some(oid)] = found.as_slice() {
                return Found::Relation(*oid);
            }
        }
    }
    Found::Missing(relation_suggestions(&spellings, relkinds, &schemas))
}

/// The closest names of the same kinds, in the named schema or the search_path's schemas,
/// schema-qualified when the user qualified the name.
fn relation_suggestions(
    spellings: &[Vec<String>],
    relkinds: &str,
    schemas: &[String],
) -> Vec<String> {
    let Some(written) = spellings.last() else {
        return Vec::new();
    };
    let (schema, rel) = match written.as_slice() {
        [s, r] => (Some(s.clone()), r.clone()),
        [r] => (None, r.clone()),
        _ => return Vec::new(),
    };
    let sql = format!(
        "SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE c.relkind OPERATOR(pg_catalog.=) ANY ({kinds}) \
           AND CASE WHEN $1::pg_catalog.text IS NULL THEN n.nspname OPERATOR(pg_catalog.=) ANY ($2) \
                    ELSE n.nspname OPERATOR(pg_catalog.=) $1 END",
        kinds = kinds(relkinds)
    );
    let existing = own_sql::select(
        &sql,
        &[schema.clone().into(), schemas.to_vec().into()],
        |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<String>(r, 2).unwrap_or_default(),
            )
        },
    );
    let names: Vec<String> = existing.iter().map(|(_, n)| n.clone()).collect();
    close_names(&rel, &names)
        .into_iter()
        .map(|n| match &schema {
            Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&n)),
            None => format!("\"{n}\""),
        })
        .collect()
}

/// The constraint `name` (spelled as SQL reads it, or as written) of the table `table`:
/// `Ok((validated, the statement that validates it))`, or `Err(closest names)` when the table
/// has no such constraint.
pub fn find_constraint(table: pg_sys::Oid, name: &str) -> Result<(bool, String), Vec<String>> {
    let spellings: Vec<String> = name_spellings(name)
        .map(|s| s.into_iter().filter_map(|p| p.into_iter().last()).collect())
        .unwrap_or_else(|_| vec![name.to_string()]);
    let existing = own_sql::select(
        "SELECT con.conname::pg_catalog.text, con.convalidated, \
                pg_catalog.format('ALTER TABLE %I.%I VALIDATE CONSTRAINT %I', n.nspname, t.relname, con.conname) \
         FROM pg_catalog.pg_constraint con \
         JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) con.conrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.relnamespace \
         WHERE con.conrelid OPERATOR(pg_catalog.=) $1",
        &[table.into()],
        |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<bool>(r, 2).unwrap_or(false),
                col::<String>(r, 3).unwrap_or_default(),
            )
        },
    );
    for wanted in &spellings {
        if let Some((_, valid, validate)) = existing.iter().find(|(n, _, _)| n == wanted) {
            return Ok((*valid, validate.clone()));
        }
    }
    let names: Vec<String> = existing.into_iter().map(|(n, _, _)| n).collect();
    let close = close_names(spellings.last().map_or(name, |s| s.as_str()), &names);
    Err(close.into_iter().map(|n| format!("\"{n}\"")).collect())
}

/// Whether the function `name` (`f`, `schema.f`, or with argument types, `f(int, text)`) exists:
/// `Ok(())`, or `Err(closest names)`. With argument types it is resolved by `to_regprocedure`
/// under the caller's search_path, as the caller would call it; without, by name (as SQL reads
/// it, then as written) in the named schema or the search_path's schemas.
pub fn find_function(name: &str) -> Result<(), Vec<String>> {
    let bare = name.split('(').next().unwrap_or("").trim();
    let spellings = name_spellings(bare).unwrap_or_default();
    if let Some(args) = name.find('(').map(|i| &name[i..]) {
        // Each spelling of the name, quoted, with the argument list as written.
        for parts in &spellings {
            let quoted: Vec<String> = parts.iter().map(|p| quote_ident(p)).collect();
            let signature = format!("{}{args}", quoted.join("."));
            let found = Spi::get_one_with_args::<bool>(
                "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL",
                &[signature.as_str().into()],
            )
            .ok()
            .flatten()
            .unwrap_or(false);
            if found {
                return Ok(());
            }
        }
    }
    let schema = match spellings.last().map(|p| p.as_slice()) {
        Some([s, _]) => Some(s.clone()),
        _ => None,
    };
    // Every function name in the schemas the name may mean (each spelling's schema, or the
    // search_path's), read once.
    let schemas: Vec<String> = match &schema {
        Some(_) => spellings
            .iter()
            .filter_map(|p| p.first().cloned())
            .collect(),
        None => caller_schemas(),
    };
    let existing = own_sql::select(
        "SELECT DISTINCT n.nspname::pg_catalog.text, p.proname::pg_catalog.text FROM pg_catalog.pg_proc p \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace \
         WHERE n.nspname OPERATOR(pg_catalog.=) ANY ($1)",
        &[schemas.into()],
        |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<String>(r, 2).unwrap_or_default(),
            )
        },
    );
    if !name.contains('(') {
        let matches = |parts: &Vec<String>| match parts.as_slice() {
            [s, f] => existing.iter().any(|(es, ef)| es == s && ef == f),
            [f] => existing.iter().any(|(_, ef)| ef == f),
            _ => false,
        };
        if spellings.iter().any(matches) {
            return Ok(());
        }
    }
    let Some(wanted) = spellings.last().and_then(|p| p.last()) else {
        return Err(Vec::new());
    };
    let same_name = spellings.iter().find_map(|p| {
        let f = p.last()?;
        existing
            .iter()
            .find(|(_, ef)| ef == f)
            .map(|(s, _)| (s.clone(), f.clone()))
    });
    if let (true, Some((s, f))) = (name.contains('('), same_name) {
        return Err(signatures(&s, &f));
    }
    let mut names: Vec<String> = existing.into_iter().map(|(_, f)| f).collect();
    names.dedup();
    let close = close_names(wanted, &names);
    Err(close
        .into_iter()
        .map(|f| match &schema {
            Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&f)),
            None => format!("\"{f}\""),
        })
        .collect())
}

/// Up to three signatures of the function `schema.name`, as to_regprocedure reads them.
fn signatures(schema: &str, name: &str) -> Vec<String> {
    own_sql::select(
        "SELECT pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)) \
         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace \
         WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND p.proname OPERATOR(pg_catalog.=) $2 ORDER BY 1 LIMIT 3",
        &[schema.into(), name.into()],
        |r| col::<String>(r, 1).unwrap_or_default(),
    )
}

/// The column `name` of the table `table`, as the catalog spells it: found as SQL reads the name,
/// then as written; `Err(closest names)` when the table has none such.
pub fn find_column(table: pg_sys::Oid, name: &str) -> Result<String, Vec<String>> {
    let existing = own_sql::select(
        "SELECT attname::pg_catalog.text FROM pg_catalog.pg_attribute \
         WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attnum OPERATOR(pg_catalog.>) 0 AND NOT attisdropped",
        &[table.into()],
        |r| col::<String>(r, 1).unwrap_or_default(),
    );
    let spellings: Vec<String> = match name_spellings(name) {
        Ok(s) => s.into_iter().filter_map(|p| p.into_iter().last()).collect(),
        Err(_) => vec![name.to_string()],
    };
    for wanted in &spellings {
        if existing.contains(wanted) {
            return Ok(wanted.clone());
        }
    }
    let close = close_names(spellings.last().map_or(name, |s| s.as_str()), &existing);
    Err(close.into_iter().map(|n| format!("\"{n}\"")).collect())
}
