//! The rows of a table about to be attached as a partition that fall outside its bounds: the
//! condition "inside the bounds" is built from the partitioned table's key columns (from the
//! catalog) and the bound values, each analysed and deparsed by PostgreSQL and cast to its key
//! column's type. Range and list bounds on key columns; expression keys, hash and DEFAULT
//! partitions are not counted.

use super::tree::{self, node};
use crate::own_sql::{self, col, quote_ident};

/// The partitioned table's key columns: (quoted name, type as format_type prints it), or None
/// when a key is an expression.
fn key_columns(parent: pgrx::pg_sys::Oid) -> Option<Vec<(String, String)>> {
    let keys = own_sql::select(
        "SELECT k.attnum, a.attname::pg_catalog.text, pg_catalog.format_type(a.atttypid, a.atttypmod) \
         FROM pg_catalog.pg_partitioned_table p \
         CROSS JOIN LATERAL pg_catalog.unnest(p.partattrs) WITH ORDINALITY k(attnum, n) \
         LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) p.partrelid \
              AND a.attnum OPERATOR(pg_catalog.=) k.attnum \
         WHERE p.partrelid OPERATOR(pg_catalog.=) $1 ORDER BY k.n",
        &[parent.into()],
        |r| {
            (
                col::<i16>(r, 1).unwrap_or(0),
                col::<String>(r, 2).unwrap_or_default(),
                col::<String>(r, 3).unwrap_or_default(),
            )
        },
    );
    if keys.is_empty() || keys.iter().any(|k| k.0 == 0) {
        return None;
    }
    Some(
        keys.into_iter()
            .map(|(_, n, t)| (quote_ident(&n), t))
            .collect(),
    )
}

/// What a raw bound value is: MINVALUE, MAXVALUE, or an expression.
enum Value {
    Min,
    Max,
    Expr(String),
}

/// One bound value, analysed as PostgreSQL analyses a partition bound and deparsed, cast to the
/// key column's type (which comes from the catalog).
fn value(raw: *mut pgrx::pg_sys::Node, key_type: &str) -> Result<Value, String> {
    use pgrx::pg_sys;
    if let Some(column) = tree::cast::<pg_sys::ColumnRef>(raw) {
        let fields = super::string_list(column.fields);
        match fields.as_slice() {
            [f] if f == "minvalue" => return Ok(Value::Min),
            [f] if f == "maxvalue" => return Ok(Value::Max),
            _ => {}
        }
    }
    let text =
        tree::analyse_expression(raw, pg_sys::ParseExprKind::EXPR_KIND_PARTITION_BOUND)?.text;
    Ok(Value::Expr(format!("({text})::{key_type}")))
}

fn row(items: &[String]) -> String {
    format!("ROW({})", items.join(", "))
}

/// One side of a range bound as a row comparison over the key prefix before the first
/// MINVALUE/MAXVALUE (which stand for "any value" in the remaining columns); None when the
/// bound starts with one (no limit on that side).
fn range_side(
    keys: &[(String, String)],
    datums: *mut pgrx::pg_sys::List,
    lower: bool,
) -> Result<Option<String>, String> {
    let items = tree::list::<pgrx::pg_sys::Node>(datums);
    let (mut cols, mut vals, mut open) = (Vec::new(), Vec::new(), false);
    for (raw, (name, ty)) in items.iter_ptr().zip(keys) {
        match value(raw, ty)? {
            Value::Expr(v) => {
                cols.push(name.clone());
                vals.push(v);
            }
            Value::Min | Value::Max => {
                open = true;
                break;
            }
        }
    }
    if cols.is_empty() {
        return Ok(None);
    }
    let op = match (lower, open) {
        (true, _) => ">=",
        (false, true) => "<=",
        (false, false) => "<",
    };
    Ok(Some(format!("{} {op} {}", row(&cols), row(&vals))))
}

/// The condition a row of the partition must meet, over the partition's columns; Err says why
/// it cannot be built.
pub fn inside(
    parent: pgrx::pg_sys::Oid,
    spec: *mut pgrx::pg_sys::PartitionBoundSpec,
) -> Result<String, String> {
    let keys = key_columns(parent).ok_or("an expression partition key is not counted")?;
    // The bound of an ATTACH PARTITION command.
    let (strategy, is_default, list, lower, upper) = {
        let spec = node(spec);
        (
            spec.strategy as u8,
            spec.is_default,
            spec.listdatums,
            spec.lowerdatums,
            spec.upperdatums,
        )
    };
    if is_default {
        return Err("a DEFAULT partition accepts every row the others do not".into());
    }
    match strategy {
        b'r' => {
            let sides: Vec<String> = [
                range_side(&keys, lower, true)?,
                range_side(&keys, upper, false)?,
            ]
            .into_iter()
            .flatten()
            .collect();
            let not_null: Vec<String> = keys
                .iter()
                .map(|(k, _)| format!("{k} IS NOT NULL"))
                .collect();
            Ok([not_null, sides].concat().join(" AND "))
        }
        b'l' => {
            let (key, ty) = &keys[0];
            let items = tree::list::<pgrx::pg_sys::Node>(list);
            let (mut vals, mut nulls) = (Vec::new(), false);
            for raw in items.iter_ptr() {
                // A raw bound value; a NULL constant is an A_Const with isnull set.
                let is_null = tree::cast::<pgrx::pg_sys::A_Const>(raw).is_some_and(|c| c.isnull);
                if is_null {
                    nulls = true;
                } else if let Value::Expr(v) = value(raw, ty)? {
                    vals.push(v);
                }
            }
            let mut any = Vec::new();
            if !vals.is_empty() {
                any.push(format!("{key} IN ({})", vals.join(", ")));
            }
            if nulls {
                any.push(format!("{key} IS NULL"));
            }
            Ok(format!("({})", any.join(" OR ")))
        }
        _ => Err("hash partition bounds are not counted".into()),
    }
}
