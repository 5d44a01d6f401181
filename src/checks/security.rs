//! Security configuration: `validate_security_configuration()`.
//!
//! Each row names an object and carries the SQL that fixes it. The role and server checks see the
//! whole cluster; the table and function checks see the current database.

use crate::own_sql::{self, col, quote_literal};
use crate::policy::app_objects;
use crate::{checks::findings, settings};
use pgrx::prelude::*;
use runbook_core::status::Status;

/// One finding: check, status, object, detail, remediation.
pub struct SecurityFinding {
    pub check: &'static str,
    pub status: Status,
    pub object: String,
    pub detail: String,
    pub remediation: String,
    /// Set when an accepted finding covers this one (see findings.rs).
    pub suppressed: Option<String>,
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
        suppressed: None,
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
    let found = own_sql::select(sql, args, |r| {
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
/// around a name removed. An unquoted name stands for itself folded to lower case and, as the
/// catalog may spell it, as written (`App` finds schema "App").
pub fn exposed_schemas() -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in settings::text(&settings::EXPOSED_SCHEMAS)
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        let spellings = match s.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
            Some(quoted) => vec![quoted.replace("\"\"", "\"")],
            None => vec![s.to_lowercase(), s.to_string()],
        };
        for name in spellings {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// `q.nspname` and `q.relname` as `schema.name`, quoted: the text every finding names a
/// relation by.
const REL: &str = "pg_catalog.format('%I.%I', n.nspname, c.relname)";

/// The API roles of a Supabase-style setup (PostgREST's anonymous and signed-in roles) that
/// exist here. Views and the extension's tables are judged by what these and PUBLIC can read.
fn api_roles() -> Vec<String> {
    own_sql::select(
        "SELECT rolname::pg_catalog.text FROM pg_catalog.pg_roles \
         WHERE rolname OPERATOR(pg_catalog.=) ANY ('{anon,authenticated}'::pg_catalog.name[]) ORDER BY 1",
        &[],
        |r| col::<String>(r, 1).unwrap_or_default(),
    )
}

fn tables(rows: &mut Vec<SecurityFinding>) {
    let app_schema = app_objects::schema("n");
    let not_member = app_objects::not_extension_member("c.oid");
    per_object(
        rows,
        "policies_without_rls",
        Status::Fail,
        &format!(
            "SELECT {REL}, \
                    pg_catalog.format('%s policies defined, but row-level security is disabled: they are not enforced', pg_catalog.count(*)), \
                    pg_catalog.format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY;', n.nspname, c.relname) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
             JOIN pg_catalog.pg_policy p ON p.polrelid OPERATOR(pg_catalog.=) c.oid \
             WHERE NOT c.relrowsecurity AND {app_schema} GROUP BY n.nspname, c.relname ORDER BY 1"
        ),
        &[],
        "every table with policies has row-level security enabled",
    );
    per_object(
        rows,
        "rls_enabled_without_policy",
        Status::Warn,
        &format!(
            "SELECT {REL}, \
                    'row-level security is enabled but no policy is defined: every role but the owner and BYPASSRLS roles sees no row', \
                    pg_catalog.format('CREATE POLICY %I ON %I.%I AS RESTRICTIVE USING (false); -- says so explicitly; replace with the policies the table needs', \
                                      'deny_all', n.nspname, c.relname) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
             WHERE c.relrowsecurity AND c.relkind OPERATOR(pg_catalog.=) ANY ('{{r,p}}'::\"char\"[]) AND {app_schema} \
               AND {not_member} \
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid) \
             ORDER BY 1"
        ),
        &[],
        "every table with row-level security enabled has a policy",
    );
    let schemas = exposed_schemas();
    per_object(
        rows,
        "exposed_table_without_rls",
        Status::Warn,
        &format!(
            "SELECT {REL}, \
                    pg_catalog.format('in exposed schema %I without row-level security: every role with table privileges sees every row', n.nspname), \
                    pg_catalog.format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY; -- then CREATE POLICY ... for each role that reads it', n.nspname, c.relname) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
             WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{{r,p}}'::\"char\"[]) AND NOT c.relispartition AND NOT c.relrowsecurity \
               AND n.nspname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) AND {not_member} ORDER BY 1"
        ),
        &[schemas.clone().into()],
        &format!(
            "every table in the exposed schemas ({}) has row-level security",
            schemas.join(", ")
        ),
    );
    // A view runs its query with its owner's rights unless security_invoker is set (PostgreSQL
    // 15): an API role that may read it bypasses the row-level security of the tables beneath.
    let api = api_roles();
    per_object(
        rows,
        "view_without_security_invoker",
        Status::Fail,
        &format!(
            "SELECT {REL}, \
                    pg_catalog.format('runs with the rights of its owner %I, and %s may read it: row-level security of the tables it reads is bypassed', \
                                      pg_catalog.pg_get_userbyid(c.relowner), \
                                      pg_catalog.array_to_string(ARRAY( \
                                        SELECT r FROM pg_catalog.unnest($1::pg_catalog.text[]) r \
                                        WHERE pg_catalog.has_table_privilege(r, c.oid, 'SELECT') ORDER BY 1), ', ')), \
                    pg_catalog.format('ALTER VIEW %I.%I SET (security_invoker = true);', n.nspname, c.relname) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
             WHERE c.relkind OPERATOR(pg_catalog.=) 'v' AND {app_schema} AND {not_member} \
               AND NOT COALESCE(c.reloptions OPERATOR(pg_catalog.&&) \
                                '{{security_invoker=true,security_invoker=on,security_invoker=1,security_invoker=yes}}'::pg_catalog.text[], false) \
               AND EXISTS (SELECT 1 FROM pg_catalog.unnest($1::pg_catalog.text[]) r \
                           WHERE pg_catalog.has_table_privilege(r, c.oid, 'SELECT')) \
             ORDER BY 1"
        ),
        &[api.clone().into()],
        &if api.is_empty() {
            "no role anon or authenticated: no view is exposed to API roles".to_string()
        } else {
            format!(
                "no view readable by {} runs with its owner's rights",
                api.join(", ")
            )
        },
    );
    // The extension's own tables (cache entries, metrics, baselines) are for runbook roles only.
    let mut readers = api;
    readers.push("public".into());
    per_object(
        rows,
        "extension_tables_exposed",
        Status::Fail,
        &format!(
            "SELECT {REL}, \
                    pg_catalog.format('pg_runbook''s own table is readable by %s', \
                                      pg_catalog.array_to_string(ARRAY( \
                                        SELECT CASE WHEN r OPERATOR(pg_catalog.=) 'public' THEN 'PUBLIC' ELSE r END \
                                        FROM pg_catalog.unnest($1::pg_catalog.text[]) r \
                                        WHERE pg_catalog.has_table_privilege(r, c.oid, 'SELECT') ORDER BY 1), ', ')), \
                    pg_catalog.format('REVOKE ALL ON TABLE %I.%I FROM %s;', n.nspname, c.relname, \
                                      pg_catalog.array_to_string(ARRAY( \
                                        SELECT CASE WHEN r OPERATOR(pg_catalog.=) 'public' THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r) END \
                                        FROM pg_catalog.unnest($1::pg_catalog.text[]) r \
                                        WHERE pg_catalog.has_table_privilege(r, c.oid, 'SELECT') ORDER BY 1), ', ')) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
             JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
                  AND d.objid OPERATOR(pg_catalog.=) c.oid AND d.deptype OPERATOR(pg_catalog.=) 'e' \
             JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid \
                  AND e.extname OPERATOR(pg_catalog.=) 'pg_runbook' \
             WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{{r,p,v,m}}'::\"char\"[]) \
               AND EXISTS (SELECT 1 FROM pg_catalog.unnest($1::pg_catalog.text[]) r \
                           WHERE pg_catalog.has_table_privilege(r, c.oid, 'SELECT')) \
             ORDER BY 1"
        ),
        &[readers.into()],
        "no table of pg_runbook is readable by PUBLIC or the API roles",
    );
}

fn functions(rows: &mut Vec<SecurityFinding>) {
    let app_schema = app_objects::schema("n");
    // Functions an extension installed are its maintainers' business, not the application's.
    let mutable = |definer: bool| {
        format!(
            "SELECT pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)), \
                    {detail}, \
                    pg_catalog.format('ALTER FUNCTION %I.%I(%s) SET search_path = pg_catalog, pg_temp;', \
                                      n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)) \
             FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace \
             WHERE p.prosecdef OPERATOR(pg_catalog.=) {definer} AND {app_schema} \
               AND p.prokind OPERATOR(pg_catalog.=) ANY ('{{f,p}}'::\"char\"[]) \
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                               WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass \
                                 AND d.objid OPERATOR(pg_catalog.=) p.oid AND d.deptype OPERATOR(pg_catalog.=) 'e') \
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(p.proconfig) cfg \
                               WHERE cfg OPERATOR(pg_catalog.~~) 'search\\_path=%') \
             ORDER BY 1",
            detail = if definer {
                "'SECURITY DEFINER without a fixed search_path: a caller can shadow the objects it uses'"
            } else {
                "'no fixed search_path: what its body resolves depends on the caller''s search_path'"
            }
        )
    };
    per_object(
        rows,
        "security_definer_search_path",
        Status::Fail,
        &mutable(true),
        &[],
        "every SECURITY DEFINER function fixes its search_path",
    );
    per_object(
        rows,
        "function_search_path_mutable",
        Status::Warn,
        &mutable(false),
        &[],
        "every function fixes its search_path",
    );
}

fn extensions(rows: &mut Vec<SecurityFinding>) {
    // Objects in public are found through every role's default search_path; an extension's
    // functions and operators there can be shadowed or can shadow the application's.
    per_object(
        rows,
        "extension_in_public",
        Status::Warn,
        "SELECT pg_catalog.quote_ident(e.extname), \
                'extension installed in schema public', \
                CASE WHEN e.extrelocatable \
                     THEN pg_catalog.format('CREATE SCHEMA IF NOT EXISTS extensions; ALTER EXTENSION %I SET SCHEMA extensions;', e.extname) \
                     ELSE '' END \
         FROM pg_catalog.pg_extension e \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace \
         WHERE n.nspname OPERATOR(pg_catalog.=) 'public' ORDER BY 1",
        &[],
        "no extension is installed in schema public",
    );
}

fn public_schema(rows: &mut Vec<SecurityFinding>) {
    // Grantee 0 in aclexplode is PUBLIC. PostgreSQL 15 no longer grants CREATE on public to it.
    per_object(
        rows,
        "public_schema_create",
        Status::Fail,
        "SELECT pg_catalog.quote_ident(n.nspname), \
                pg_catalog.format('PUBLIC may create objects in schema %I, so any role can plant functions and operators that others resolve through search_path', n.nspname), \
                pg_catalog.format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC;', n.nspname) \
         FROM pg_catalog.pg_namespace n, LATERAL pg_catalog.aclexplode(n.nspacl) a \
         WHERE n.nspname OPERATOR(pg_catalog.=) 'public' AND a.grantee OPERATOR(pg_catalog.=) 0::oid \
           AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'",
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
        "SELECT pg_catalog.quote_ident(rolname), 'can log in as superuser', \
                pg_catalog.format('ALTER ROLE %I NOSUPERUSER; -- or NOLOGIN, granting what it needs instead', rolname) \
         FROM pg_catalog.pg_roles WHERE rolsuper AND rolcanlogin AND oid OPERATOR(pg_catalog.<>) 10::oid ORDER BY 1",
        &[],
        "no login role other than the bootstrap superuser is a superuser",
    );
    // Whether pg_hba.conf asks for passwords, and which roles have none, are visible to superusers
    // (pg_hba_file_rules, pg_authid) only.
    let superuser = own_sql::select_one(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) CURRENT_USER",
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
    let password_auth = own_sql::select_one(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_hba_file_rules \
                        WHERE auth_method OPERATOR(pg_catalog.=) ANY ('{md5,scram-sha-256,password}'::pg_catalog.text[]))",
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
        "SELECT pg_catalog.quote_ident(rolname), 'can log in but has no password, and pg_hba.conf asks for passwords', \
                pg_catalog.format('ALTER ROLE %I PASSWORD ''...''; -- or NOLOGIN', rolname) \
         FROM pg_catalog.pg_authid WHERE rolcanlogin AND rolpassword IS NULL ORDER BY 1",
        &[],
        "every login role has a password",
    );
}

fn server_settings(rows: &mut Vec<SecurityFinding>) {
    let (encryption, ssl) = own_sql::select_one(
        "SELECT pg_catalog.current_setting('password_encryption'), pg_catalog.current_setting('ssl')",
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
    // Pinned search_path: a planted public.format() or public.=(oid, oid) resolves to nothing.
    let pinned = [("search_path", "pg_catalog, pg_temp".to_string())];
    own_sql::with_lock_timeout(|| {
        own_sql::with_settings(&pinned, || {
            let mut rows = Vec::new();
            tables(&mut rows);
            functions(&mut rows);
            extensions(&mut rows);
            public_schema(&mut rows);
            roles(&mut rows);
            server_settings(&mut rows);
            let accepted = findings::active_acceptances();
            for r in rows.iter_mut() {
                r.suppressed = findings::acceptance_for(&accepted, r.check, r.status, &r.object);
            }
            rows
        })
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
            findings::status_text(f.status, &f.suppressed),
            f.object,
            findings::with_acceptance(f.detail, &f.suppressed),
            f.remediation,
        )
    }))
}
