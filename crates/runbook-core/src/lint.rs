//! Migration lint rules: what a DDL statement costs (the lock it takes, whether it rewrites or scans
//! the table) judged against how big the table is, and the safe form to use instead.
//!
//! The extension walks PostgreSQL's raw parse tree and looks tables up in the catalog; this module
//! only takes those facts and returns verdicts, so every rule is tested without a server.

use crate::status::Status;

/// PostgreSQL's table lock modes, weakest first (the order of `LOCKMODE`, 1-based there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockMode {
    pub const ALL: [LockMode; 8] = [
        LockMode::AccessShare,
        LockMode::RowShare,
        LockMode::RowExclusive,
        LockMode::ShareUpdateExclusive,
        LockMode::Share,
        LockMode::ShareRowExclusive,
        LockMode::Exclusive,
        LockMode::AccessExclusive,
    ];

    /// The name `pg_locks.mode` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::AccessShare => "AccessShareLock",
            LockMode::RowShare => "RowShareLock",
            LockMode::RowExclusive => "RowExclusiveLock",
            LockMode::ShareUpdateExclusive => "ShareUpdateExclusiveLock",
            LockMode::Share => "ShareLock",
            LockMode::ShareRowExclusive => "ShareRowExclusiveLock",
            LockMode::Exclusive => "ExclusiveLock",
            LockMode::AccessExclusive => "AccessExclusiveLock",
        }
    }

    pub fn parse(s: &str) -> Option<LockMode> {
        LockMode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether a lock in `self` and one in `other` on the same table conflict: PostgreSQL's
    /// conflict table (documentation, "Table-Level Locks").
    pub fn conflicts_with(self, other: LockMode) -> bool {
        use LockMode::*;
        let conflicting: &[LockMode] = match self {
            AccessShare => &[AccessExclusive],
            RowShare => &[Exclusive, AccessExclusive],
            RowExclusive => &[Share, ShareRowExclusive, Exclusive, AccessExclusive],
            ShareUpdateExclusive => &[
                ShareUpdateExclusive,
                Share,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
            Share => &[
                RowExclusive,
                ShareUpdateExclusive,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
            ShareRowExclusive => &[
                RowExclusive,
                ShareUpdateExclusive,
                Share,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
            Exclusive => &[
                RowShare,
                RowExclusive,
                ShareUpdateExclusive,
                Share,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
            AccessExclusive => &LockMode::ALL,
        };
        conflicting.contains(&other)
    }

    /// What the lock stops while it is held (and while it waits: later requests queue behind it).
    pub fn blocks(self) -> &'static str {
        match self {
            LockMode::AccessExclusive => "blocks reads and writes",
            LockMode::Exclusive | LockMode::ShareRowExclusive | LockMode::Share => "blocks writes",
            LockMode::ShareUpdateExclusive => "blocks other DDL and VACUUM",
            _ => "blocks only conflicting DDL",
        }
    }
}

/// What a statement does to the table's data while it holds its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A catalog change only: the lock is held for milliseconds (once granted).
    None,
    /// Reads every row (a validation, an index build).
    Scan,
    /// Writes a new copy of the table and its indexes.
    Rewrite,
}

impl Work {
    pub fn as_str(self) -> &'static str {
        match self {
            Work::None => "none",
            Work::Scan => "scan",
            Work::Rewrite => "rewrite",
        }
    }
}

/// What the catalog says about the table a statement touches.
#[derive(Debug, Clone, PartialEq)]
pub enum TableState {
    /// Created earlier in the same migration: empty, nobody else uses it yet.
    New,
    /// Neither in the catalog nor created by the migration.
    Missing,
    /// In the catalog: heap (and TOAST) bytes, and estimated rows (`None`: never analyzed).
    Existing { bytes: i64, rows: Option<i64> },
}

/// Thresholds: `pg_runbook.lint_warn_rows`, `lint_fail_rows`, `lint_scan_rate` (MB/s).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub warn_rows: i64,
    pub fail_rows: i64,
    pub scan_mb_per_s: f64,
}

/// A rewrite writes the heap and rebuilds every index: counted as this many scans.
const REWRITE_COST: f64 = 3.0;

/// How long a statement holds its lock, in ms, when one can be estimated: none for a catalog-only
/// change, the table's bytes at the scan rate for a scan, three times that for a rewrite.
pub fn lock_hold_ms(work: Work, state: &TableState, limits: &Limits) -> Option<f64> {
    let bytes = match state {
        TableState::New => 0,
        TableState::Existing { bytes, .. } => *bytes,
        TableState::Missing => return None,
    };
    let per_scan = bytes as f64 / (limits.scan_mb_per_s.max(0.001) * 1_048_576.0) * 1000.0;
    match work {
        Work::None => Some(0.0),
        Work::Scan => Some(per_scan),
        Work::Rewrite => Some(per_scan * REWRITE_COST),
    }
}

/// The verdict of a statement whose cost grows with the table: PASS on a new or empty table, FAIL
/// at `fail_rows`, WARN at `warn_rows`; a non-empty table never analyzed is a WARN (its size is
/// unknown), a table that does not exist yet a WARN too (nothing to judge it by).
pub fn judge_size(state: &TableState, limits: &Limits) -> (Status, String) {
    match state {
        TableState::New => (
            Status::Pass,
            "the table is created in this migration".into(),
        ),
        TableState::Missing => (
            Status::Warn,
            "the table is not in the catalog and not created earlier in this migration".into(),
        ),
        TableState::Existing { bytes: 0, .. } => (Status::Pass, "the table is empty".into()),
        TableState::Existing { rows: None, .. } => (
            Status::Warn,
            "the table has never been analyzed: its row count is unknown (ANALYZE it)".into(),
        ),
        TableState::Existing {
            rows: Some(rows), ..
        } => {
            let status = if *rows >= limits.fail_rows {
                Status::Fail
            } else if *rows >= limits.warn_rows {
                Status::Warn
            } else {
                Status::Pass
            };
            let bound = match status {
                Status::Fail => {
                    format!("at least fail_rows ({})", limits.fail_rows)
                }
                Status::Warn => {
                    format!("at least warn_rows ({})", limits.warn_rows)
                }
                Status::Pass => format!("below warn_rows ({})", limits.warn_rows),
            };
            (status, format!("about {rows} rows, {bound}"))
        }
    }
}

/// The statement's text with `word` (CONCURRENTLY, NOT VALID) put right after the first keyword
/// `after` (case-insensitive, outside quotes and comments); `None` when the keyword is not there.
pub fn insert_after_keyword(sql: &str, after: &str, word: &str) -> Option<String> {
    let at = keyword_end(sql, after)?;
    Some(format!("{} {}{}", &sql[..at], word, &sql[at..]))
}

/// Byte offset just past the first occurrence of `keyword` as a whole word outside string
/// literals, quoted identifiers and comments.
fn keyword_end(sql: &str, keyword: &str) -> Option<usize> {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                let q = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                if sql[start..i].eq_ignore_ascii_case(keyword) {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// The statement without the comments and white space before it: the raw parser counts a
/// statement from the end of the previous one, so its text starts with the comments between them.
pub fn strip_leading_comments(sql: &str) -> &str {
    let mut rest = sql.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after
                .split_once('\n')
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after
                .split_once("*/")
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else {
            return rest;
        }
    }
}

/// The statement without its trailing semicolon and white space.
pub fn trim_statement(sql: &str) -> &str {
    sql.trim().trim_end_matches(';').trim_end()
}

/// The first non-blank line of a statement, shortened to 80 characters.
pub fn first_line(sql: &str) -> String {
    let line = sql
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if line.chars().count() > 80 {
        format!("{}...", line.chars().take(77).collect::<String>())
    } else {
        line.to_string()
    }
}

/// A column type as the rewrite rule needs it: the type's name in pg_type and its typmod.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnType {
    pub name: String,
    pub typmod: i32,
}

/// Whether `ALTER COLUMN ... TYPE` from `old` to `new` rewrites the table, following
/// PostgreSQL's own shortcuts: a binary-coercible change without USING (varchar to text) is a
/// catalog change, and so is relaxing a length or precision limit (varchar(10) to varchar(20),
/// numeric(10,2) to numeric(12,2) or to numeric, timestamp(0) to timestamp(3)).
pub fn type_change_rewrites(
    old: &ColumnType,
    new: &ColumnType,
    binary_coercible: bool,
    has_using: bool,
) -> bool {
    if has_using {
        return true;
    }
    if old.name != new.name {
        // varchar(n) -> text is binary coercible; text -> varchar(n) is not (it checks lengths).
        return !(binary_coercible && new.typmod < 0);
    }
    if new.typmod < 0 || new.typmod == old.typmod {
        return false;
    }
    if old.typmod < 0 {
        return true; // adding a limit checks every value
    }
    match old.name.as_str() {
        "varchar" | "varbit" | "timestamp" | "timestamptz" | "time" | "timetz" | "interval" => {
            new.typmod < old.typmod
        }
        "numeric" => {
            // typmod = ((precision << 16) | scale) + VARHDRSZ
            let (op, os) = ((old.typmod - 4) >> 16, (old.typmod - 4) & 0xffff);
            let (np, ns) = ((new.typmod - 4) >> 16, (new.typmod - 4) & 0xffff);
            !(ns == os && np >= op)
        }
        _ => true,
    }
}

/// The name PostgreSQL gives an unnamed constraint on `table` over `columns` (ChooseConstraintName
/// without the 63-byte truncation or the numbering on collision): `orders_user_id_fkey`.
pub fn default_constraint_name(table: &str, columns: &[String], suffix: &str) -> String {
    let mut parts = vec![table.to_string()];
    parts.extend(columns.iter().cloned());
    parts.push(suffix.to_string());
    parts.join("_")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        warn_rows: 10_000,
        fail_rows: 500_000,
        scan_mb_per_s: 100.0,
    };

    #[test]
    fn access_exclusive_conflicts_with_every_mode_and_access_share_only_with_it() {
        for m in LockMode::ALL {
            assert!(LockMode::AccessExclusive.conflicts_with(m));
            assert_eq!(
                LockMode::AccessShare.conflicts_with(m),
                m == LockMode::AccessExclusive
            );
        }
    }

    #[test]
    fn the_conflict_table_is_symmetric() {
        for a in LockMode::ALL {
            for b in LockMode::ALL {
                assert_eq!(a.conflicts_with(b), b.conflicts_with(a), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn share_lock_of_an_index_build_blocks_writers_not_readers() {
        assert!(LockMode::Share.conflicts_with(LockMode::RowExclusive));
        assert!(!LockMode::Share.conflicts_with(LockMode::AccessShare));
        assert!(!LockMode::Share.conflicts_with(LockMode::Share));
    }

    #[test]
    fn the_same_statement_passes_on_a_new_or_empty_table_and_fails_on_a_large_one() {
        assert_eq!(judge_size(&TableState::New, &LIMITS).0, Status::Pass);
        let empty = TableState::Existing {
            bytes: 0,
            rows: None,
        };
        assert_eq!(judge_size(&empty, &LIMITS).0, Status::Pass);
        let mid = TableState::Existing {
            bytes: 1 << 20,
            rows: Some(20_000),
        };
        assert_eq!(judge_size(&mid, &LIMITS).0, Status::Warn);
        let large = TableState::Existing {
            bytes: 1 << 30,
            rows: Some(1_000_000),
        };
        let (status, why) = judge_size(&large, &LIMITS);
        assert_eq!(status, Status::Fail);
        assert!(why.contains("at least fail_rows (500000)"), "{why}");
    }

    #[test]
    fn a_table_never_analyzed_is_a_warning_not_a_pass() {
        let unknown = TableState::Existing {
            bytes: 8192,
            rows: None,
        };
        assert_eq!(judge_size(&unknown, &LIMITS).0, Status::Warn);
    }

    #[test]
    fn a_rewrite_is_estimated_at_three_scans() {
        let t = TableState::Existing {
            bytes: 100 * 1_048_576,
            rows: Some(1),
        };
        assert_eq!(lock_hold_ms(Work::Scan, &t, &LIMITS), Some(1000.0));
        assert_eq!(lock_hold_ms(Work::Rewrite, &t, &LIMITS), Some(3000.0));
        assert_eq!(lock_hold_ms(Work::None, &t, &LIMITS), Some(0.0));
        assert_eq!(
            lock_hold_ms(Work::Scan, &TableState::Missing, &LIMITS),
            None
        );
    }

    #[test]
    fn concurrently_goes_after_the_index_keyword_not_into_a_quoted_name() {
        assert_eq!(
            insert_after_keyword(
                "create unique index \"index\" on t (a)",
                "index",
                "CONCURRENTLY"
            )
            .unwrap(),
            "create unique index CONCURRENTLY \"index\" on t (a)"
        );
        assert_eq!(
            insert_after_keyword("-- index\nDROP INDEX i", "INDEX", "CONCURRENTLY").unwrap(),
            "-- index\nDROP INDEX CONCURRENTLY i"
        );
        assert_eq!(insert_after_keyword("VACUUM t", "INDEX", "X"), None);
    }

    #[test]
    fn comments_before_a_statement_are_not_part_of_it() {
        assert_eq!(
            strip_leading_comments("\n-- step 1\n/* why */ CREATE INDEX i ON t (a) -- trailing"),
            "CREATE INDEX i ON t (a) -- trailing"
        );
        assert_eq!(strip_leading_comments("-- only a comment"), "");
    }

    #[test]
    fn first_line_skips_blank_lines_and_shortens_long_ones() {
        assert_eq!(
            first_line("\n\n  ALTER TABLE t\n ADD x int"),
            "ALTER TABLE t"
        );
        assert_eq!(first_line(&"x".repeat(100)).chars().count(), 80);
    }

    fn ty(name: &str, typmod: i32) -> ColumnType {
        ColumnType {
            name: name.into(),
            typmod,
        }
    }

    #[test]
    fn widening_a_varchar_or_dropping_its_limit_does_not_rewrite() {
        assert!(!type_change_rewrites(
            &ty("varchar", 14),
            &ty("varchar", 24),
            false,
            false
        ));
        assert!(!type_change_rewrites(
            &ty("varchar", 14),
            &ty("text", -1),
            true,
            false
        ));
        assert!(type_change_rewrites(
            &ty("varchar", 24),
            &ty("varchar", 14),
            false,
            false
        ));
        assert!(type_change_rewrites(
            &ty("text", -1),
            &ty("varchar", 14),
            true,
            false
        ));
    }

    #[test]
    fn int_to_bigint_and_any_using_clause_rewrite() {
        assert!(type_change_rewrites(
            &ty("int4", -1),
            &ty("int8", -1),
            false,
            false
        ));
        assert!(type_change_rewrites(
            &ty("text", -1),
            &ty("text", -1),
            true,
            true
        ));
    }

    #[test]
    fn numeric_precision_may_grow_at_the_same_scale_only() {
        let n = |p: i32, s: i32| ty("numeric", ((p << 16) | s) + 4);
        assert!(!type_change_rewrites(&n(10, 2), &n(12, 2), false, false));
        assert!(type_change_rewrites(&n(10, 2), &n(12, 3), false, false));
        assert!(!type_change_rewrites(
            &n(10, 2),
            &ty("numeric", -1),
            false,
            false
        ));
    }

    #[test]
    fn unnamed_constraints_are_named_as_postgresql_does() {
        assert_eq!(
            default_constraint_name("orders", &["user_id".into()], "fkey"),
            "orders_user_id_fkey"
        );
    }
}
