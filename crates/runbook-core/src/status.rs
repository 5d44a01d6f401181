//! The verdict every check returns, and how thresholds turn an observation into one.

use std::fmt;

/// A check's verdict. Ordered from best to worst, so the worst of several is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }

    /// The worst verdict of several; `Pass` when there are none.
    pub fn worst(all: impl IntoIterator<Item = Status>) -> Status {
        all.into_iter().max().unwrap_or(Status::Pass)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value that is bad when high (connections in use, lag, age): FAIL at or above `fail`, WARN at
/// or above `warn`. `inclusive == false` makes the bounds strict ("more than 5 minutes").
pub fn judge_high(value: f64, warn: Option<f64>, fail: Option<f64>, inclusive: bool) -> Status {
    let over = |bound: Option<f64>| match bound {
        Some(b) if inclusive => value >= b,
        Some(b) => value > b,
        None => false,
    };
    if over(fail) {
        Status::Fail
    } else if over(warn) {
        Status::Warn
    } else {
        Status::Pass
    }
}

/// A value that is bad when low (a cache hit ratio): FAIL below `fail`, WARN below `warn`.
pub fn judge_low(value: f64, warn: Option<f64>, fail: Option<f64>) -> Status {
    let under = |bound: Option<f64>| bound.is_some_and(|b| value < b);
    if under(fail) {
        Status::Fail
    } else if under(warn) {
        Status::Warn
    } else {
        Status::Pass
    }
}

/// What a set of check verdicts means for a service: any FAIL is unhealthy, any WARN degraded.
pub fn health_word(worst: Status) -> &'static str {
    match worst {
        Status::Pass => "healthy",
        Status::Warn => "degraded",
        Status::Fail => "unhealthy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_values_cross_warn_then_fail_inclusively() {
        assert_eq!(judge_high(79.9, Some(80.0), Some(95.0), true), Status::Pass);
        assert_eq!(judge_high(80.0, Some(80.0), Some(95.0), true), Status::Warn);
        assert_eq!(judge_high(95.0, Some(80.0), Some(95.0), true), Status::Fail);
    }

    #[test]
    fn strict_bounds_need_more_than_the_threshold() {
        assert_eq!(
            judge_high(300_000.0, Some(60_000.0), Some(300_000.0), false),
            Status::Warn
        );
        assert_eq!(
            judge_high(300_001.0, Some(60_000.0), Some(300_000.0), false),
            Status::Fail
        );
        assert_eq!(
            judge_high(60_000.0, Some(60_000.0), Some(300_000.0), false),
            Status::Pass
        );
    }

    #[test]
    fn a_missing_bound_never_fires() {
        assert_eq!(judge_high(1e12, None, None, true), Status::Pass);
        assert_eq!(judge_high(1e12, Some(1.0), None, true), Status::Warn);
    }

    #[test]
    fn low_values_fail_below_the_fail_bound() {
        assert_eq!(judge_low(99.0, Some(95.0), Some(90.0)), Status::Pass);
        assert_eq!(judge_low(94.0, Some(95.0), Some(90.0)), Status::Warn);
        assert_eq!(judge_low(89.9, Some(95.0), Some(90.0)), Status::Fail);
    }

    #[test]
    fn worst_of_none_is_pass_and_fail_dominates() {
        assert_eq!(Status::worst([]), Status::Pass);
        assert_eq!(
            Status::worst([Status::Warn, Status::Fail, Status::Pass]),
            Status::Fail
        );
        assert_eq!(health_word(Status::Warn), "degraded");
    }
}
