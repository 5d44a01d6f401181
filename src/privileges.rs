//! The privilege model: who may call what (docs/security.md).
//!
//! Three roles, created by the install script when missing: `runbook_reader` (checks and reports),
//! `runbook_operator` (also refreshes, drains, records metrics and uses the query cache) and
//! `runbook_admin` (also edits SLO, rollback and retention rules). EXECUTE on every function that
//! acts or writes is revoked from PUBLIC and granted to the role that needs it.

pgrx::extension_sql_file!("../sql/roles.sql", name = "roles", bootstrap);
pgrx::extension_sql_file!("../sql/privileges.sql", name = "privileges", finalize);
