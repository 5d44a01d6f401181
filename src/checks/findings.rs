//! The row every object-level check returns: `check, status, object, detail`. Shared by the
//! migration verification and the integrity checks (and read by the compliance report); and the
//! accepted findings (`accepted_findings`, `accept_finding()`) every object-level check honours (the
//! pre-deployment checks and the health check judge live conditions against settings instead).

use crate::error;
use crate::own_sql::{self, col};
use pgrx::prelude::*;
use runbook_core::status::Status;

/// One finding of a check.
pub struct Finding {
    pub check: &'static str,
    pub status: Status,
    pub object: String,
    pub detail: String,
    /// Set when an accepted finding covers this one: who accepted it, why, until when.
    pub suppressed: Option<String>,
}

impl Finding {
    pub fn new(
        check: &'static str,
        status: Status,
        object: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Finding {
            check,
            status,
            object: object.into(),
            detail: detail.into(),
            suppressed: None,
        }
    }

    /// A WARN or FAIL that no accepted finding covers: what an `assert_*` function raises on.
    pub fn failing(&self) -> bool {
        self.status == Status::Fail && self.suppressed.is_none()
    }

    /// The status as reported: `SUPPRESSED` for an accepted finding.
    pub fn status_text(&self) -> String {
        status_text(self.status, &self.suppressed)
    }

    /// The status that counts towards a summary: an accepted finding counts as PASS.
    pub fn effective_status(&self) -> Status {
        if self.suppressed.is_some() {
            Status::Pass
        } else {
            self.status
        }
    }

    /// The finding as a SQL row: check, status, object, detail.
    pub fn into_row(self) -> (String, String, String, String) {
        let status = self.status_text();
        let detail = with_acceptance(self.detail, &self.suppressed);
        (self.check.to_string(), status, self.object, detail)
    }
}

/// `SUPPRESSED` for an accepted finding, else the status.
pub fn status_text(status: Status, suppressed: &Option<String>) -> String {
    match suppressed {
        Some(_) => "SUPPRESSED".into(),
        None => status.as_str().into(),
    }
}

/// The detail of an accepted finding names the acceptance first, then what was found.
pub fn with_acceptance(detail: String, suppressed: &Option<String>) -> String {
    match suppressed {
        Some(why) => format!("{why}; found: {detail}"),
        None => detail,
    }
}

/// Adds a PASS row standing for "nothing found" when `check` added no row since `rows` held
/// `before`, so every check appears in the output.
pub fn pass_if_none(check: &'static str, rows: &mut Vec<Finding>, before: usize, detail: &str) {
    if rows.len() == before {
        rows.push(Finding::new(check, Status::Pass, "", detail));
    }
}

/// The accepted findings in force now: (check, object, description). An acceptance whose
/// `until` has passed no longer applies.
pub fn active_acceptances() -> Vec<(String, String, String)> {
    let sql = format!(
        "SELECT \"check\", object, \
                pg_catalog.format('accepted by %s%s: %s', accepted_by, \
                    CASE WHEN until IS NULL THEN '' ELSE pg_catalog.format(' until %s', until) END, reason) \
         FROM {} WHERE until IS NULL OR until OPERATOR(pg_catalog.>) pg_catalog.now()",
        own_sql::ext_object("accepted_findings")
    );
    own_sql::select(&sql, &[], |r| {
        (
            col::<String>(r, 1).unwrap_or_default(),
            col::<String>(r, 2).unwrap_or_default(),
            col::<String>(r, 3).unwrap_or_default(),
        )
    })
}

/// The acceptance covering a WARN or FAIL of `check` on `object`, if any.
pub fn acceptance_for(
    accepted: &[(String, String, String)],
    check: &str,
    status: Status,
    object: &str,
) -> Option<String> {
    if status == Status::Pass {
        return None;
    }
    accepted
        .iter()
        .find(|(c, o, _)| c == check && o == object)
        .map(|(_, _, why)| why.clone())
}

/// Marks every finding an acceptance covers as suppressed.
pub fn apply_acceptances(rows: &mut [Finding]) {
    let accepted = active_acceptances();
    for row in rows.iter_mut() {
        row.suppressed = acceptance_for(&accepted, row.check, row.status, &row.object);
    }
}

/// Accepts a finding: from now on (until `until`, or for good when NULL) the WARN or FAIL of
/// `check` on `object` (both exactly as the check reports them) is reported as SUPPRESSED with
/// `reason`, and `assert_*` functions no longer raise on it. Accepting again replaces the
/// reason and the date. Acceptances that expired more than 90 days ago are deleted. For
/// runbook_admin.
#[pg_extern(volatile)]
fn accept_finding(
    check: Option<&str>,
    object: Option<&str>,
    reason: Option<&str>,
    until: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> bool {
    let check = error::required("check", check);
    let object = error::required("object", object);
    let reason = error::required("reason", reason);
    if check.trim().is_empty() {
        error::invalid_argument("check", "must not be empty");
    }
    if reason.trim().is_empty() {
        error::invalid_argument("reason", "must say why the finding is accepted");
    }
    let table = own_sql::ext_object("accepted_findings");
    own_sql::execute(
        &format!(
            "DELETE FROM {table} WHERE until OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '90 days')"
        ),
        &[],
    );
    own_sql::execute(
        &format!(
            "INSERT INTO {table} (\"check\", object, reason, until) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (\"check\", object) DO UPDATE SET reason = EXCLUDED.reason, until = EXCLUDED.until, \
                 accepted_by = EXCLUDED.accepted_by, accepted_at = EXCLUDED.accepted_at"
        ),
        &[check.into(), object.into(), reason.into(), until.into()],
    );
    true
}

/// Withdraws the acceptance of `check` on `object`; true when there was one. For runbook_admin.
#[pg_extern(volatile)]
fn withdraw_finding(check: Option<&str>, object: Option<&str>) -> bool {
    let check = error::required("check", check);
    let object = error::required("object", object);
    let sql = format!(
        "DELETE FROM {} WHERE \"check\" OPERATOR(pg_catalog.=) $1 AND object OPERATOR(pg_catalog.=) $2",
        own_sql::ext_object("accepted_findings")
    );
    own_sql::execute(&sql, &[check.into(), object.into()]) > 0
}

pgrx::extension_sql_file!(
    "../../sql/findings.sql",
    name = "findings",
    requires = [accept_finding, withdraw_finding]
);
