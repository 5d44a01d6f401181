//! The compliance report: `generate_compliance_report(tenant, as_of)`, one jsonb document with
//! the pre-deployment, integrity and security checks, the retention status and, when
//! `pg_runbook.audit_table` names one, the audit table's coverage of the month up to `as_of`.

use crate::checks::preflight::{Thresholds, all_checks};
use crate::own_sql::{self, col, quote_ident};
use crate::{
    checks::findings, checks::integrity, checks::partitions, checks::security, error,
    policy::names, settings,
};
use pgrx::prelude::*;
use runbook_core::status::Status;
use serde_json::{Value, json};

fn section(rows: Vec<(String, Status, Value)>) -> (Status, Value) {
    let worst = Status::worst(rows.iter().map(|r| r.1));
    (worst, Value::Array(rows.into_iter().map(|r| r.2).collect()))
}

fn retention() -> Value {
    let actions = partitions::apply_all(true);
    let pending: Vec<Value> = actions
        .iter()
        .map(|a| json!({"policy": a.policy, "mode": a.mode, "action": a.action, "object": a.object, "rows": a.rows, "detail": a.detail}))
        .collect();
    let overdue = actions
        .iter()
        .any(|a| a.action.starts_with("would") && a.rows != Some(0));
    let skipped = actions.iter().any(|a| a.action == "skipped");
    let status = if skipped || overdue {
        Status::Warn
    } else {
        Status::Pass
    };
    json!({"status": status.as_str(), "pending": pending})
}

/// The audit table's time column: the setting, else its time-typed range partition key, else its
/// first date/timestamp column.
fn audit_time_column(table: pg_sys::Oid) -> Option<String> {
    let set = settings::text(&settings::AUDIT_TIME_COLUMN);
    if !set.is_empty() {
        return Some(set);
    }
    own_sql::select(
        "SELECT a.attname::pg_catalog.text FROM pg_catalog.pg_attribute a \
         LEFT JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid OPERATOR(pg_catalog.=) a.attrelid \
              AND pt.partnatts OPERATOR(pg_catalog.=) 1 AND pt.partattrs[0] OPERATOR(pg_catalog.=) a.attnum \
         WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped \
           AND a.atttypid::pg_catalog.regtype OPERATOR(pg_catalog.=) \
               ANY ('{date,timestamp,timestamptz}'::pg_catalog.regtype[]) \
         ORDER BY pt.partrelid IS NULL, a.attnum LIMIT 1",
        &[table.into()],
        |r| col::<String>(r, 1),
    )
    .into_iter()
    .flatten()
    .next()
}

fn audit(tenant: Option<&str>, as_of: Date) -> Value {
    let table = settings::text(&settings::AUDIT_TABLE);
    if table.is_empty() {
        return json!({"configured": false, "detail": "set pg_runbook.audit_table to report audit coverage"});
    }
    // Found as the caller's search_path finds it, or as the catalog spells it.
    let oid = match names::find_relation("pg_runbook.audit_table", &table, "r,p") {
        names::Found::Relation(oid) => oid,
        names::Found::Missing(close) => {
            let detail = format!(
                "pg_runbook.audit_table names no table{}",
                names::Found::hint(&close)
            );
            return json!({"configured": true, "table": table, "status": "FAIL", "detail": detail});
        }
    };
    let name = own_sql::select_one(
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE c.oid OPERATOR(pg_catalog.=) $1",
        &[oid.into()],
        |r| col::<String>(r, 1).unwrap_or_default(),
    );
    let Some(time_column) = audit_time_column(oid) else {
        return json!({"configured": true, "table": name, "status": "FAIL", "detail": "no time column: set pg_runbook.audit_time_column"});
    };
    // The settings name columns as the catalog spells them or as SQL reads them.
    let missing = |setting: &str, column: &str, close: Vec<String>| {
        let detail = format!(
            "{setting} names no column {column} of {name}{}",
            names::Found::hint(&close)
        );
        json!({"configured": true, "table": name, "status": "FAIL", "detail": detail})
    };
    let time_column = match names::find_column(oid, &time_column) {
        Ok(c) => c,
        Err(close) => return missing("pg_runbook.audit_time_column", &time_column, close),
    };
    let mut tenant_column = settings::text(&settings::AUDIT_TENANT_COLUMN);
    if !tenant_column.is_empty() {
        tenant_column = match names::find_column(oid, &tenant_column) {
            Ok(c) => c,
            Err(close) => return missing("pg_runbook.audit_tenant_column", &tenant_column, close),
        };
    }
    let filtered = tenant.is_some() && !tenant_column.is_empty();
    let tenant_filter = if filtered {
        format!(
            " AND {}::pg_catalog.text OPERATOR(pg_catalog.=) $3",
            quote_ident(&tenant_column)
        )
    } else {
        String::new()
    };
    let t = quote_ident(&time_column);
    // The period is the calendar month of as_of, up to and including as_of.
    let sql = format!(
        "SELECT pg_catalog.count(*), pg_catalog.count(DISTINCT {t}::pg_catalog.date), \
                (pg_catalog.date_trunc('month', $1::pg_catalog.date)::pg_catalog.date)::pg_catalog.text, \
                ($2::pg_catalog.date OPERATOR(pg_catalog.-) pg_catalog.date_trunc('month', $1::pg_catalog.date)::pg_catalog.date \
                    OPERATOR(pg_catalog.+) 1)::pg_catalog.int8 \
         FROM {oid_name} \
         WHERE {t} OPERATOR(pg_catalog.>=) pg_catalog.date_trunc('month', $1::pg_catalog.date) \
           AND {t} OPERATOR(pg_catalog.<) ($2::pg_catalog.date OPERATOR(pg_catalog.+) 1){tenant_filter}",
        oid_name = name
    );
    let mut args: Vec<pgrx::datum::DatumWithOid> = vec![as_of.into(), as_of.into()];
    if filtered {
        args.push(tenant.unwrap_or_default().to_string().into());
    }
    let (changes, days_with, from, days) = own_sql::with_lock_timeout(|| {
        own_sql::with_settings(&[("DateStyle", "ISO, YMD".into())], || {
            own_sql::select_one(&sql, &args, |r| {
                (
                    col::<i64>(r, 1).unwrap_or(0),
                    col::<i64>(r, 2).unwrap_or(0),
                    col::<String>(r, 3).unwrap_or_default(),
                    col::<i64>(r, 4).unwrap_or(0),
                )
            })
        })
    });
    json!({
        "configured": true,
        "table": name,
        "time_column": time_column,
        "tenant_column": if tenant_column.is_empty() { Value::Null } else { Value::String(tenant_column) },
        "filtered_by_tenant": filtered,
        "period": {"from": from, "to": as_of.to_string(), "days": days},
        "changes": changes,
        "days_with_changes": days_with,
        "status": if changes > 0 { "PASS" } else { "WARN" },
    })
}

/// A compliance report as one jsonb document.
#[pg_extern(volatile, requires = ["partitions"])]
fn generate_compliance_report(
    tenant: default!(Option<&str>, "NULL"),
    as_of: default!(Option<Date>, "current_date"),
) -> pgrx::JsonB {
    let as_of = error::required("as_of", as_of);
    let (pre_status, preflight) = section(
        all_checks(&Thresholds::from_settings())
            .into_iter()
            .map(|c| {
                let v = json!({"check": c.check, "status": c.status.as_str(), "observed": c.observed, "threshold": c.threshold, "detail": c.detail});
                (c.check.to_string(), c.status, v)
            })
            .collect(),
    );
    let (int_status, integrity) = section(
        integrity::all_findings(1000, settings::SEQUENCE_WARN_PCT.get(), settings::SEQUENCE_FAIL_PCT.get())
            .into_iter()
            .map(|f| {
                let (status, shown) = (f.effective_status(), f.status_text());
                let v = json!({"check": f.check, "status": shown, "object": f.object, "detail": findings::with_acceptance(f.detail, &f.suppressed)});
                (f.check.to_string(), status, v)
            })
            .collect(),
    );
    let (sec_status, security) = section(
        security::all_findings()
            .into_iter()
            .map(|f| {
                let status = if f.suppressed.is_some() { Status::Pass } else { f.status };
                let shown = findings::status_text(f.status, &f.suppressed);
                let v = json!({"check": f.check, "status": shown, "object": f.object, "detail": findings::with_acceptance(f.detail, &f.suppressed), "remediation": f.remediation});
                (f.check.to_string(), status, v)
            })
            .collect(),
    );
    let retention = retention();
    let audit = audit(tenant, as_of);
    let status_of = |v: &Value| match v.get("status").and_then(Value::as_str) {
        Some("FAIL") => Status::Fail,
        Some("WARN") => Status::Warn,
        _ => Status::Pass,
    };
    let overall = Status::worst([
        pre_status,
        int_status,
        sec_status,
        status_of(&retention),
        status_of(&audit),
    ]);
    let database = own_sql::select_one(
        "SELECT pg_catalog.current_database()::pg_catalog.text, pg_catalog.now()::pg_catalog.text",
        &[],
        |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<String>(r, 2).unwrap_or_default(),
            )
        },
    );
    pgrx::JsonB(json!({
        "report": "pg_runbook compliance report",
        "tenant": tenant,
        "as_of": as_of.to_string(),
        "database": database.0,
        "generated_at": database.1,
        "status": overall.as_str(),
        "sections": {
            "preflight": {"status": pre_status.as_str(), "checks": preflight},
            "integrity": {"status": int_status.as_str(), "checks": integrity},
            "security": {"status": sec_status.as_str(), "checks": security},
            "retention": retention,
            "audit": audit,
        },
    }))
}
