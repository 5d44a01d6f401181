//! The row every object-level check returns: `check, status, object, detail`. Shared by the
//! migration verification and the integrity checks (and read by the compliance report).

use runbook_core::status::Status;

/// One finding of a check.
pub struct Finding {
    pub check: &'static str,
    pub status: Status,
    pub object: String,
    pub detail: String,
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
        }
    }

    /// The finding as a SQL row: check, status, object, detail.
    pub fn into_row(self) -> (String, String, String, String) {
        (
            self.check.to_string(),
            self.status.as_str().to_string(),
            self.object,
            self.detail,
        )
    }
}

/// Adds a PASS row standing for "nothing found" when `check` added no row since `rows` held
/// `before`, so every check appears in the output.
pub fn pass_if_none(check: &'static str, rows: &mut Vec<Finding>, before: usize, detail: &str) {
    if rows.len() == before {
        rows.push(Finding::new(check, Status::Pass, "", detail));
    }
}
