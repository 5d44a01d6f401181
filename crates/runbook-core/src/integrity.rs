//! Integrity rules: how much of a sequence's range is used up.

use crate::status::{Status, judge_high};

/// Percentage of a sequence's range consumed so far, for ascending (`increment > 0`) and
/// descending sequences. A sequence never called (`last_value` NULL) has used nothing.
pub fn sequence_used_pct(
    last_value: Option<i64>,
    min_value: i64,
    max_value: i64,
    increment: i64,
) -> f64 {
    let Some(last) = last_value else { return 0.0 };
    let span = max_value as f64 - min_value as f64;
    if span <= 0.0 {
        return 100.0;
    }
    let used = if increment >= 0 {
        last as f64 - min_value as f64
    } else {
        max_value as f64 - last as f64
    };
    (used / span * 100.0).clamp(0.0, 100.0)
}

/// WARN at or above `warn_pct`, FAIL at or above `fail_pct`.
pub fn judge_sequence(used_pct: f64, warn_pct: f64, fail_pct: f64) -> Status {
    judge_high(used_pct, Some(warn_pct), Some(fail_pct), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascending_sequence_usage_is_measured_from_its_minimum() {
        assert_eq!(sequence_used_pct(Some(51), 1, 101, 1), 50.0);
        assert_eq!(sequence_used_pct(None, 1, 101, 1), 0.0);
        assert_eq!(
            sequence_used_pct(Some(i32::MAX as i64), 1, i32::MAX as i64, 1),
            100.0
        );
    }

    #[test]
    fn descending_sequence_usage_is_measured_from_its_maximum() {
        assert_eq!(sequence_used_pct(Some(-50), -101, -1, -1), 49.0);
        assert_eq!(sequence_used_pct(Some(-1), -101, -1, -1), 0.0);
    }

    #[test]
    fn headroom_warns_at_80_and_fails_at_95_percent() {
        assert_eq!(judge_sequence(79.9, 80.0, 95.0), Status::Pass);
        assert_eq!(judge_sequence(80.0, 80.0, 95.0), Status::Warn);
        assert_eq!(judge_sequence(95.0, 80.0, 95.0), Status::Fail);
        // A smallint sequence at 33,000 of 32,767 cannot happen; a full one is FAIL.
        assert_eq!(
            judge_sequence(sequence_used_pct(Some(32_767), 1, 32_767, 1), 80.0, 95.0),
            Status::Fail
        );
    }
}
