//! Security configuration: `validate_security_configuration()`.
//!
//! Each row names an object and carries the SQL that fixes it. The role and server checks see the
//! whole cluster; the table and function checks see the current database.

use crate::catalog::NOT_EXTENSION_MEMBER;
use crate::catalog::{self, col, quote_literal};
use crate::integrity::USER_SCHEMAS;
use crate::settings;
use pgrx::prelude::*;
use runbook_core::status::Status;

/// One finding: check, status, object, detail, remediation.
pub struct SecurityFinding {
    pub check: &'static str,
    pub status: Status,
    pub object: String,
    pub detail: String,
    pub remediation: String,
}

fn row(
    check: &'static str,
    status: Status,
    object: String,
    detail: String,
    remediation: String,
) -> SecurityFinding {
    SecurityFinding {
        check,
        status,
        object,
        detail,
        remediation,
    }
}

/// Adds one row per (object, detail, remediation) the query returns, or a PASS row saying `none`.
fn per_object(
    rows: &mut Vec<SecurityFinding>,
    check: &'static str,
    status: Status,
    sql: &str,
    args: &[pgrx::datum::DatumWithOid],
    none: &str,
) {
    let found = catalog::select(sql, args, |r| {
        (
            col::<String>(r, 1).unwrap_or_default(),
            col::<String>(r, 2).unwrap_or_default(),
            col::<String>(r, 3).unwrap_or_default(),
        )
    });
    if found.is_empty() {
        rows.push(row(
            check,
            Status::Pass,
            String::new(),
            none.into(),
            String::new(),
        ));
    }
    for (object, detail, fix) in found {
        rows.push(row(check, status, object, detail, fix));
    }
}

/// `pg_runbook.exposed_schemas` as a list of names: split on commas, trimmed, double quotes
/// around a name removed.
pub fn exposed_schemas() -> Vec<String> {
    settings::text(&settings::EXPOSED_SCHEMAS)
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .map_or_else(|| s.to_lowercase(), |x| x.replace("\"\"", "\""))
        })
        .collect()
}

fn tables(rows: &mut Vec<SecurityFinding>) {
    per_object(
        rows,
        "policies_without_rls",
        Status::Fail,
        &format!(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
                    count(*) || ' policies defined, but row-level security is disabled: they are not enforced', \
                    format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY;', n.nspname, c.relname) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_policy p ON p.polrelid = c.oid \
             WHERE NOT c.relrowsecurity AND {USER_SCHEMAS} GROUP BY n.nspname, c.relname ORDER BY 1"
        ),
        &[],
        "every table with policies has row-level security enabled",
    );
    let schemas = exposed_schemas();
    per_object(
        rows,
        "exposed_table_without_rls",
        Status::Warn,
        &format!(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
                    'in exposed schema ' || quote_ident(n.nspname) || ' without row-level security: every role with table privileges sees every row', \
                    format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY; -- then CREATE POLICY ... for each role that reads it', n.nspname, c.relname) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND NOT c.relrowsecurity \
               AND n.nspname = ANY ($1::text[]) AND {NOT_EXTENSION_MEMBER} ORDER BY 1"
        ),
        &[schemas.clone().into()],
        &format!(
            "every table in the exposed schemas ({}) has row-level security",
            schemas.join(", ")
        ),
    );
}

fn functions(rows: &mut Vec<SecurityFinding>) {
    per_object(
        rows,
        "security_definer_search_path",
        Status::Fail,
        &format!(
            "SELECT p.oid::regprocedure::text, \
                    'SECURITY DEFINER without a fixed search_path: a caller can shadow the objects it uses', \
                    format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp;', p.oid::regprocedure) \
             FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
             WHERE p.prosecdef AND {USER_SCHEMAS} \
               AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) cfg WHERE cfg LIKE 'search\\_path=%') \
             ORDER BY 1"
        ),
        &[],
        "every SECURITY DEFINER function fixes its search_path",
    );
}

fn public_schema(rows: &mut Vec<SecurityFinding>) {
    // Grantee 0 in aclexplode is PUBLIC. PostgreSQL 15 no longer grants CREATE on public to it.
    per_object(
        rows,
        "public_schema_create",
        Status::Fail,
        "SELECT quote_ident(n.nspname), 'PUBLIC may create objects in schema ' || quote_ident(n.nspname) || \
                ', so any role can plant functions and operators that others resolve through search_path', \
                format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC;', n.nspname) \
         FROM pg_catalog.pg_namespace n, LATERAL aclexplode(n.nspacl) a \
         WHERE n.nspname = 'public' AND a.grantee = 0 AND a.privilege_type = 'CREATE'",
        &[],
        "PUBLIC cannot create in schema public",
    );
}

fn roles(rows: &mut Vec<SecurityFinding>) {
    // The bootstrap superuser (oid 10) is left out: it cannot stop being one.
    per_object(
        rows,
        "superuser_login_roles",
        Status::Warn,
        "SELECT quote_ident(rolname), 'can log in as superuser', \
                format('ALTER ROLE %I NOSUPERUSER; -- or NOLOGIN, granting what it needs instead', rolname) \
         FROM pg_catalog.pg_roles WHERE rolsuper AND rolcanlogin AND oid <> 10 ORDER BY 1",
        &[],
        "no login role other than the bootstrap superuser is a superuser",
    );
    // Whether pg_hba.conf asks for passwords, and which roles have none, are visible to superusers
    // (pg_hba_file_rules, pg_authid) only.
    let superuser = catalog::select_one(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
        &[],
        |r| col::<bool>(r, 1).unwrap_or(false),
    );
    if !superuser {
        rows.push(row(
            "login_roles_without_password",
            Status::Warn,
            String::new(),
            "not checked: reading pg_hba_file_rules and pg_authid needs a superuser".into(),
            "run validate_security_configuration() as a superuser".into(),
        ));
        return;
    }
    let password_auth = catalog::select_one(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_hba_file_rules \
                        WHERE auth_method IN ('md5', 'scram-sha-256', 'password'))",
        &[],
        |r| col::<bool>(r, 1).unwrap_or(false),
    );
    if !password_auth {
        rows.push(row(
            "login_roles_without_password",
            Status::Pass,
            String::new(),
            "pg_hba.conf has no password rule: passwords are not expected".into(),
            String::new(),
        ));
        return;
    }
    per_object(
        rows,
        "login_roles_without_password",
        Status::Warn,
        "SELECT quote_ident(rolname), 'can log in but has no password, and pg_hba.conf asks for passwords', \
                format('ALTER ROLE %I PASSWORD ''...''; -- or NOLOGIN', rolname) \
         FROM pg_catalog.pg_authid WHERE rolcanlogin AND rolpassword IS NULL ORDER BY 1",
        &[],
        "every login role has a password",
    );
}

fn server_settings(rows: &mut Vec<SecurityFinding>) {
    let (encryption, ssl) = catalog::select_one(
        "SELECT current_setting('password_encryption'), current_setting('ssl')",
        &[],
        |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<String>(r, 2).unwrap_or_default(),
            )
        },
    );
    let scram = encryption == "scram-sha-256";
    rows.push(row(
        "password_encryption",
        if scram { Status::Pass } else { Status::Fail },
        "password_encryption".into(),
        format!("password_encryption = {}", quote_literal(&encryption)),
        if scram { String::new() } else {
            "ALTER SYSTEM SET password_encryption = 'scram-sha-256'; SELECT pg_reload_conf(); -- then reset each password".into()
        },
    ));
    let on = ssl == "on";
    rows.push(row(
        "ssl",
        if on { Status::Pass } else { Status::Warn },
        "ssl".into(),
        format!("ssl = {ssl}"),
        if on { String::new() } else {
            "ALTER SYSTEM SET ssl = on; SELECT pg_reload_conf(); -- with ssl_cert_file and ssl_key_file in place".into()
        },
    ));
}

/// Every security finding, as the compliance report includes them.
pub fn all_findings() -> Vec<SecurityFinding> {
    catalog::with_lock_timeout(|| {
        let mut rows = Vec::new();
        tables(&mut rows);
        functions(&mut rows);
        public_schema(&mut rows);
        roles(&mut rows);
        server_settings(&mut rows);
        rows
    })
}

/// Security configuration checks: one row per finding, with the SQL that fixes it.
#[pg_extern(volatile, parallel_safe)]
fn validate_security_configuration() -> TableIterator<
    'static,
    (
        name!(check, String),
        name!(status, String),
        name!(object, String),
        name!(detail, String),
        name!(remediation, String),
    ),
> {
    TableIterator::new(all_findings().into_iter().map(|f| {
        (
            f.check.to_string(),
            f.status.as_str().to_string(),
            f.object,
            f.detail,
            f.remediation,
        )
    }))
}
