//! Partitions and retention: `analyze_partition_distribution()`, `drop_old_partitions()`, the
//! `retention_policies` table and `apply_data_retention_policies()`.
//!
//! Which partitions may go is decided from each partition's bound as PostgreSQL prints it
//! (`pg_get_expr(relpartbound)`), read by runbook-core; anything it cannot read is skipped and
//! reported, never guessed. Everything here runs under `pg_runbook.lock_timeout`.

// pgrx needs each #[pg_extern] signature to spell out its row type (it does not resolve aliases).
#![allow(clippy::type_complexity)]

use crate::error;
use crate::own_sql::{self, col, quote_ident};
use pgrx::prelude::*;
use runbook_core::partitions::{Date, LocalTime, Verdict, cutoff, judge_partition, skewed};

/// Partition bounds and dates are read in ISO form whatever the caller's DateStyle.
fn iso<R>(f: impl FnOnce() -> R) -> R {
    own_sql::with_settings(&[("DateStyle", "ISO, YMD".into())], f)
}

const QUALIFIED: &str = "pg_catalog.format('%I.%I', n.nspname, c.relname)";

/// The column types a retention cutoff (`now() - keep`) compares with.
const TIME_TYPES: &str = "'{date,timestamp,timestamptz}'::pg_catalog.regtype[]";

/// A partitioned table: its quoted name and, when it is range-partitioned on one column of type
/// date, timestamp or timestamptz, that column's name.
struct Parent {
    oid: pg_sys::Oid,
    name: String,
    time_key: Option<String>,
    why_not: String,
}

fn partitioned_tables(only: Option<pg_sys::Oid>) -> Vec<Parent> {
    let sql = format!(
        "SELECT c.oid, {QUALIFIED}, \
                CASE WHEN pt.partstrat OPERATOR(pg_catalog.=) 'r' AND pt.partnatts OPERATOR(pg_catalog.=) 1 \
                          AND a.atttypid::pg_catalog.regtype OPERATOR(pg_catalog.=) ANY ({TIME_TYPES}) \
                     THEN a.attname::text END, \
                CASE WHEN pt.partstrat OPERATOR(pg_catalog.<>) 'r' THEN 'it is not range-partitioned' \
                     WHEN pt.partnatts OPERATOR(pg_catalog.<>) 1 \
                          THEN pg_catalog.format('its partition key has %s columns', pt.partnatts) \
                     WHEN a.attname IS NULL THEN 'its partition key is an expression' \
                     ELSE pg_catalog.format('its partition key %I is of type %s, not date, timestamp or timestamptz', \
                                            a.attname, pg_catalog.format_type(a.atttypid, NULL)) END \
         FROM pg_catalog.pg_partitioned_table pt \
         JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) pt.partrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) pt.partrelid \
              AND a.attnum OPERATOR(pg_catalog.=) pt.partattrs[0] AND pt.partattrs[0] OPERATOR(pg_catalog.<>) 0 \
         WHERE ($1::oid IS NULL OR c.oid OPERATOR(pg_catalog.=) $1) ORDER BY 2"
    );
    own_sql::select(&sql, &[only.into()], |r| Parent {
        oid: col::<pg_sys::Oid>(r, 1).unwrap_or(pg_sys::InvalidOid),
        name: col::<String>(r, 2).unwrap_or_default(),
        time_key: col::<String>(r, 3),
        why_not: col::<String>(r, 4).unwrap_or_default(),
    })
}

/// The direct partitions of a table: (quoted name, bound expression).
fn partitions_of(parent: pg_sys::Oid) -> Vec<(String, String)> {
    let sql = format!(
        "SELECT {QUALIFIED}, pg_catalog.pg_get_expr(c.relpartbound, c.oid) \
         FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.inhrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE i.inhparent OPERATOR(pg_catalog.=) $1 ORDER BY 2, 1"
    );
    iso(|| {
        own_sql::select(&sql, &[parent.into()], |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<String>(r, 2).unwrap_or_default(),
            )
        })
    })
}

fn today() -> Date {
    let text = iso(|| {
        own_sql::select_one("SELECT CURRENT_DATE::pg_catalog.text", &[], |r| {
            col::<String>(r, 1).unwrap_or_default()
        })
    });
    Date::parse(&text).unwrap_or_else(|| {
        error::not_ready(
            format!("current_date {text} is outside the range retention handles"),
            "use a date after year 1",
        )
    })
}

/// One partition that was (or would be) dropped, or was skipped.
pub struct PartitionAction {
    pub parent: String,
    pub partition: String,
    pub bounds: String,
    pub action: &'static str,
    pub detail: String,
}

/// Detaches and drops the partitions of `parent` that end at or before `cut`, oldest first.
fn drop_before(parent: &Parent, cut: LocalTime, dry_run: bool) -> Vec<PartitionAction> {
    let mut out = Vec::new();
    for (partition, bounds) in partitions_of(parent.oid) {
        let (action, detail) = match judge_partition(&bounds, cut) {
            Verdict::Keep => continue,
            Verdict::Skip(why) => ("skipped", why),
            Verdict::Drop => {
                if !dry_run {
                    own_sql::execute(
                        &format!("ALTER TABLE {} DETACH PARTITION {partition}", parent.name),
                        &[],
                    );
                    own_sql::execute(&format!("DROP TABLE {partition}"), &[]);
                }
                (
                    if dry_run { "would drop" } else { "dropped" },
                    format!("every row is before the cutoff {cut}"),
                )
            }
        };
        out.push(PartitionAction {
            parent: parent.name.clone(),
            partition,
            bounds,
            action,
            detail,
        });
    }
    out
}

/// The partitions to drop for a keep interval, across every time-partitioned table or the one
/// named (which must be one: otherwise 22023 before anything is dropped).
pub fn drop_partitions(
    parent: Option<pg_sys::Oid>,
    months: i32,
    days: i32,
    micros: i64,
    dry_run: bool,
) -> Vec<PartitionAction> {
    own_sql::with_lock_timeout(|| {
        let parents = partitioned_tables(parent);
        if let Some(oid) = parent {
            let Some(p) = parents.first() else {
                let name = own_sql::select_one(
                    &format!(
                        "SELECT {QUALIFIED} FROM pg_catalog.pg_class c \
                         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
                         WHERE c.oid OPERATOR(pg_catalog.=) $1"
                    ),
                    &[oid.into()],
                    |r| col::<String>(r, 1).unwrap_or_default(),
                );
                error::invalid_argument("parent", format!("{name} is not a partitioned table"));
            };
            if p.time_key.is_none() {
                error::invalid_argument(
                    "parent",
                    format!("{} cannot be pruned by time: {}", p.name, p.why_not),
                );
            }
        }
        let cut = cutoff(today(), months, days, micros);
        parents
            .iter()
            .filter(|p| p.time_key.is_some())
            .flat_map(|p| drop_before(p, cut, dry_run))
            .collect()
    })
}

/// Detaches and drops range partitions that hold only rows older than `keep_months` months.
#[pg_extern(volatile)]
fn drop_old_partitions(
    keep_months: Option<i32>,
    parent: default!(Option<crate::own_sql::Regclass>, "NULL"),
    dry_run: default!(Option<bool>, "false"),
) -> TableIterator<
    'static,
    (
        name!(parent, String),
        name!(partition, String),
        name!(bounds, String),
        name!(action, String),
        name!(detail, String),
    ),
> {
    let keep = error::required("keep_months", keep_months);
    if keep < 0 {
        error::invalid_argument("keep_months", format!("{keep} is negative"));
    }
    let dry_run = error::required("dry_run", dry_run);
    let parent = parent.map(|rel| rel.oid("parent"));
    let rows = drop_partitions(parent, keep, 0, 0, dry_run);
    TableIterator::new(rows.into_iter().map(|a| {
        (
            a.parent,
            a.partition,
            a.bounds,
            a.action.to_string(),
            a.detail,
        )
    }))
}

pgrx::extension_sql_file!("../../sql/partitions.sql", name = "partitions");

struct Policy {
    schema: String,
    table: String,
    time_column: String,
    keep: Interval,
    mode: String,
    batch_size: i32,
}

/// One action of apply_data_retention_policies.
pub struct RetentionAction {
    pub policy: String,
    pub mode: String,
    pub action: String,
    pub object: String,
    pub rows: Option<i64>,
    pub detail: String,
}

fn policies() -> Vec<Policy> {
    let sql = format!(
        "SELECT table_schema, table_name, time_column, keep, mode, batch_size FROM {} WHERE enabled ORDER BY 1, 2",
        own_sql::ext_object("retention_policies")
    );
    own_sql::select(&sql, &[], |r| Policy {
        schema: col::<String>(r, 1).unwrap_or_default(),
        table: col::<String>(r, 2).unwrap_or_default(),
        time_column: col::<String>(r, 3).unwrap_or_default(),
        keep: col::<Interval>(r, 4)
            .unwrap_or_else(|| error::spi_failure("reading retention_policies", "keep is NULL")),
        mode: col::<String>(r, 5).unwrap_or_default(),
        batch_size: col::<i32>(r, 6).unwrap_or(10_000),
    })
}

fn apply_policy(p: &Policy, dry_run: bool) -> Vec<RetentionAction> {
    let target = format!("{}.{}", quote_ident(&p.schema), quote_ident(&p.table));
    let action =
        |action: &str, object: String, rows: Option<i64>, detail: String| RetentionAction {
            policy: target.clone(),
            mode: p.mode.clone(),
            action: action.into(),
            object,
            rows,
            detail,
        };
    let found = own_sql::select(
        &format!(
            "SELECT c.oid, c.relkind::text, \
                    (SELECT pg_catalog.format_type(a.atttypid, NULL) OPERATOR(pg_catalog.||) \
                            CASE WHEN a.atttypid::pg_catalog.regtype OPERATOR(pg_catalog.=) ANY ({TIME_TYPES}) \
                                 THEN '' ELSE ' (not a time)' END \
                     FROM pg_catalog.pg_attribute a \
                     WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attname OPERATOR(pg_catalog.=) $3 \
                       AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
             WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND c.relname OPERATOR(pg_catalog.=) $2"
        ),
        &[
            p.schema.clone().into(),
            p.table.clone().into(),
            p.time_column.clone().into(),
        ],
        |r| {
            (
                col::<pg_sys::Oid>(r, 1),
                col::<String>(r, 2).unwrap_or_default(),
                col::<String>(r, 3),
            )
        },
    );
    let Some((Some(oid), relkind, column_type)) = found.into_iter().next() else {
        // The policy names the table exactly as the catalog spells it; say which names are close.
        let close = match crate::policy::names::find_relation("retention_policies", &target, "r,p")
        {
            crate::policy::names::Found::Missing(close) => {
                crate::policy::names::Found::hint(&close)
            }
            crate::policy::names::Found::Relation(_) => String::new(),
        };
        return vec![action(
            "skipped",
            target.clone(),
            None,
            format!("the table does not exist{close}"),
        )];
    };
    let Some(column_type) = column_type else {
        let close = match crate::policy::names::find_column(oid, &quote_ident(&p.time_column)) {
            Err(close) => crate::policy::names::Found::hint(&close),
            Ok(_) => String::new(),
        };
        return vec![action(
            "skipped",
            target.clone(),
            None,
            format!(
                "the table has no column {}{close}",
                quote_ident(&p.time_column)
            ),
        )];
    };
    // An integer or text column cannot be compared with now() - keep (42883); this policy is
    // skipped with the reason and the others still run.
    if let Some(type_name) = column_type.strip_suffix(" (not a time)") {
        return vec![action(
            "skipped",
            target.clone(),
            None,
            format!(
                "the column {} is of type {type_name}, not date, timestamp or timestamptz",
                quote_ident(&p.time_column)
            ),
        )];
    }
    if p.mode == "drop_partitions" {
        let parent = partitioned_tables(Some(oid));
        let key = parent.first().and_then(|t| t.time_key.clone());
        if key.as_deref() != Some(p.time_column.as_str()) {
            let why = parent
                .first()
                .map_or("it is not partitioned".to_string(), |t| {
                    t.time_key.as_ref().map_or(t.why_not.clone(), |k| {
                        format!(
                            "it is partitioned on {}, not on the policy's column",
                            quote_ident(k)
                        )
                    })
                });
            return vec![action(
                "skipped",
                target.clone(),
                None,
                format!("cannot drop partitions: {why}"),
            )];
        }
        let dropped = drop_partitions(
            Some(oid),
            p.keep.months(),
            p.keep.days(),
            p.keep.micros(),
            dry_run,
        );
        if dropped.is_empty() {
            return vec![action(
                "nothing to do",
                target.clone(),
                Some(0),
                "no partition ends before the cutoff".into(),
            )];
        }
        return dropped
            .into_iter()
            .map(|d| {
                action(
                    d.action,
                    d.partition,
                    None,
                    format!("{}: {}", d.bounds, d.detail),
                )
            })
            .collect();
    }
    if !matches!(relkind.as_str(), "r" | "p") {
        return vec![action(
            "skipped",
            target.clone(),
            None,
            "not a table".into(),
        )];
    }
    let column = quote_ident(&p.time_column);
    let keep = p.keep;
    if dry_run {
        let n = own_sql::select_one(
            &format!(
                "SELECT pg_catalog.count(*) FROM {target} \
                 WHERE {column} OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)"
            ),
            &[keep.into()],
            |r| col::<i64>(r, 1).unwrap_or(0),
        );
        return vec![action(
            "would delete",
            target.clone(),
            Some(n),
            format!("rows with {column} older than {}", p.keep),
        )];
    }
    // Each DELETE removes at most batch_size rows, so no statement holds row locks on, or
    // writes WAL for, an unbounded number of rows at once.
    let delete = format!(
        "DELETE FROM {target} t USING ( \
           SELECT tableoid AS toid, ctid AS tid FROM {target} \
           WHERE {column} OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1) LIMIT $2) d \
         WHERE t.tableoid OPERATOR(pg_catalog.=) d.toid AND t.ctid OPERATOR(pg_catalog.=) d.tid"
    );
    let (mut total, mut batches) = (0_i64, 0_i64);
    loop {
        let n = own_sql::execute(&delete, &[p.keep.into(), p.batch_size.into()]) as i64;
        total += n;
        batches += 1;
        if n < i64::from(p.batch_size) {
            break;
        }
    }
    vec![action(
        "deleted",
        target.clone(),
        Some(total),
        format!("in {batches} batches of at most {} rows", p.batch_size),
    )]
}

/// Every enabled policy applied (or, with dry_run, what applying would do).
pub fn apply_all(dry_run: bool) -> Vec<RetentionAction> {
    own_sql::with_lock_timeout(|| {
        policies()
            .iter()
            .flat_map(|p| apply_policy(p, dry_run))
            .collect()
    })
}

/// Applies every enabled row of retention_policies and returns the actions taken.
#[pg_extern(volatile, requires = ["partitions"])]
fn apply_data_retention_policies(
    dry_run: default!(Option<bool>, "false"),
) -> TableIterator<
    'static,
    (
        name!(policy, String),
        name!(mode, String),
        name!(action, String),
        name!(object, String),
        name!(rows, Option<i64>),
        name!(detail, String),
    ),
> {
    let dry_run = error::required("dry_run", dry_run);
    TableIterator::new(
        apply_all(dry_run)
            .into_iter()
            .map(|a| (a.policy, a.mode, a.action, a.object, a.rows, a.detail)),
    )
}

/// Per partition: its size and estimated rows, its share of the parent, a skew flag, and a WARN
/// when a default partition holds rows.
#[pg_extern(volatile, parallel_safe)]
fn analyze_partition_distribution(
    skew_factor: default!(Option<f64>, "3.0"),
) -> TableIterator<
    'static,
    (
        name!(parent, String),
        name!(partition, String),
        name!(bounds, String),
        name!(estimated_rows, i64),
        name!(size_bytes, i64),
        name!(size, String),
        name!(share_pct, f64),
        name!(skewed, bool),
        name!(status, String),
        name!(detail, String),
    ),
> {
    let factor = error::required("skew_factor", skew_factor);
    if !factor.is_finite() || factor < 1.0 {
        error::invalid_argument(
            "skew_factor",
            format!("{factor} is below 1 (a partition's even share)"),
        );
    }
    let sql = format!(
        "SELECT pg_catalog.format('%I.%I', pn.nspname, p.relname), {QUALIFIED}, \
                pg_catalog.pg_get_expr(c.relpartbound, c.oid), t.rows, t.bytes, t.unanalyzed \
         FROM pg_catalog.pg_inherits i \
         JOIN pg_catalog.pg_class p ON p.oid OPERATOR(pg_catalog.=) i.inhparent AND p.relkind OPERATOR(pg_catalog.=) 'p' \
         JOIN pg_catalog.pg_namespace pn ON pn.oid OPERATOR(pg_catalog.=) p.relnamespace \
         JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.inhrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         CROSS JOIN LATERAL ( \
             SELECT COALESCE(pg_catalog.sum(GREATEST(lc.reltuples, 0)), 0)::float8 AS rows, \
                    COALESCE(pg_catalog.sum(pg_catalog.pg_total_relation_size(pt.relid)), 0)::int8 AS bytes, \
                    COALESCE(pg_catalog.bool_or(lc.reltuples OPERATOR(pg_catalog.<) 0), false) AS unanalyzed \
             FROM pg_catalog.pg_partition_tree(c.oid) pt JOIN pg_catalog.pg_class lc ON lc.oid OPERATOR(pg_catalog.=) pt.relid \
             WHERE pt.isleaf) t \
         ORDER BY 1, 3, 2"
    );
    type Row = (String, String, String, f64, i64, bool);
    let rows: Vec<Row> = own_sql::with_lock_timeout(|| {
        iso(|| {
            own_sql::select(&sql, &[], |r| {
                (
                    col::<String>(r, 1).unwrap_or_default(),
                    col::<String>(r, 2).unwrap_or_default(),
                    col::<String>(r, 3).unwrap_or_default(),
                    col::<f64>(r, 4).unwrap_or(0.0),
                    col::<i64>(r, 5).unwrap_or(0),
                    col::<bool>(r, 6).unwrap_or(false),
                )
            })
        })
    });
    let mut out = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let end = start
            + rows[start..]
                .iter()
                .take_while(|r| r.0 == rows[start].0)
                .count();
        let group = &rows[start..end];
        let counts: Vec<f64> = group.iter().map(|r| r.3).collect();
        let total: f64 = counts.iter().sum();
        let flags = skewed(&counts, factor);
        for (r, skew) in group.iter().zip(flags) {
            let (parent, partition, bounds, est, bytes, unanalyzed) = r.clone();
            let share = if total > 0.0 {
                (est * 1000.0 / total).round() / 10.0
            } else {
                0.0
            };
            let mut notes = Vec::new();
            let mut status = "PASS";
            if bounds == "DEFAULT" {
                let q = format!("SELECT EXISTS (SELECT 1 FROM {partition})");
                let holds = own_sql::with_lock_timeout(|| {
                    own_sql::select_one(&q, &[], |r| col::<bool>(r, 1).unwrap_or(false))
                });
                if holds {
                    status = "WARN";
                    notes.push("the default partition holds rows: create the partitions they belong in and move them there".to_string());
                }
            }
            if skew {
                status = "WARN";
                notes.push(format!(
                    "skewed: more than {factor} times its even share of {:.0} rows",
                    total / group.len() as f64
                ));
            }
            if unanalyzed {
                notes.push("never analyzed: row estimate unknown (run ANALYZE)".into());
            }
            let size = own_sql::select_one(
                "SELECT pg_catalog.pg_size_pretty($1::int8)",
                &[bytes.into()],
                |r| col::<String>(r, 1).unwrap_or_default(),
            );
            out.push((
                parent,
                partition,
                bounds,
                est as i64,
                bytes,
                size,
                share,
                skew,
                status.to_string(),
                notes.join("; "),
            ));
        }
        start = end;
    }
    TableIterator::new(out)
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn monthly_table() {
        Spi::run(
            "CREATE TABLE t_monthly (at date NOT NULL) PARTITION BY RANGE (at); \
             CREATE TABLE t_monthly_default PARTITION OF t_monthly DEFAULT; \
             DO $$ BEGIN FOR i IN 0..29 LOOP \
               EXECUTE format('CREATE TABLE t_monthly_%s PARTITION OF t_monthly FOR VALUES FROM (%L) TO (%L)', i, \
                 date_trunc('month', current_date)::date - make_interval(months => i), \
                 date_trunc('month', current_date)::date - make_interval(months => i - 1)); \
             END LOOP; END $$",
        )
        .unwrap();
    }

    #[pg_test]
    fn drop_old_partitions_keeping_24_months_drops_the_five_oldest() {
        monthly_table();
        let dry = Spi::get_one::<i64>(
            "SELECT count(*) FROM drop_old_partitions(24, 't_monthly', true) WHERE action = 'would drop'",
        );
        assert_eq!(dry, Ok(Some(5)));
        let dropped = Spi::get_one::<i64>(
            "SELECT count(*) FROM drop_old_partitions(24, 't_monthly') WHERE action = 'dropped'",
        );
        assert_eq!(dropped, Ok(Some(5)));
        let left = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 't_monthly'::regclass",
        );
        assert_eq!(left, Ok(Some(26)));
    }

    #[pg_test(error = "invalid value for argument \"keep_months\": -1 is negative")]
    fn a_negative_keep_is_refused() {
        monthly_table();
        Spi::run("SELECT * FROM drop_old_partitions(-1)").unwrap();
    }
}
