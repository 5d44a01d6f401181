//! Judging SLO rules and rollback triggers over a series of 5-minute buckets, and error-budget
//! burn rates. Values in, verdicts out.

/// How a metric breaches its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Above,
    Below,
}

impl Comparison {
    /// Parses the `comparison` column: '>' or '<'.
    pub fn parse(s: &str) -> Option<Comparison> {
        match s.trim() {
            ">" => Some(Comparison::Above),
            "<" => Some(Comparison::Below),
            _ => None,
        }
    }

    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Above => value > threshold,
            Comparison::Below => value < threshold,
        }
    }

    /// The worse of two observations for this comparison.
    fn worse(self, a: f64, b: f64) -> f64 {
        match self {
            Comparison::Above => a.max(b),
            Comparison::Below => a.min(b),
        }
    }
}

/// One bucket of a series: its position (bucket start / 5 minutes) and the metric's value, `None`
/// when the bucket had no data for it (no traffic, or no cache lookups).
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub slot: i64,
    pub value: Option<f64>,
}

/// What a rule found over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// True when `required` consecutive buckets breached.
    pub breached: bool,
    /// The longest run of consecutive breaching buckets.
    pub breached_buckets: i64,
    /// The worst value seen in the window (None without data).
    pub observed: Option<f64>,
    /// Buckets with data.
    pub buckets: i64,
}

/// Judges a rule over `points` (in any order). Buckets are consecutive when their slots are: a
/// bucket without data (a gap, or `None`) ends a run.
pub fn judge(points: &[Point], cmp: Comparison, threshold: f64, required: i64) -> Judgement {
    let mut pts: Vec<(i64, f64)> = points
        .iter()
        .filter_map(|p| p.value.map(|v| (p.slot, v)))
        .collect();
    pts.sort_by_key(|p| p.0);
    let mut longest = 0i64;
    let mut run = 0i64;
    let mut prev_slot: Option<i64> = None;
    let mut observed: Option<f64> = None;
    for &(slot, v) in &pts {
        observed = Some(observed.map_or(v, |o| cmp.worse(o, v)));
        if cmp.breaches(v, threshold) {
            run = if prev_slot == Some(slot - 1) && run > 0 {
                run + 1
            } else {
                1
            };
        } else {
            run = 0;
        }
        longest = longest.max(run);
        prev_slot = Some(slot);
    }
    Judgement {
        breached: longest >= required.max(1),
        breached_buckets: longest,
        observed,
        buckets: pts.len() as i64,
    }
}

/// An error budget's burn rate: the observed error rate divided by the rate the objective allows.
/// 1.0 spends the budget exactly over the SLO window.
pub fn burn_rate(errors: u64, requests: u64, objective: f64) -> Option<f64> {
    let budget = 1.0 - objective;
    if requests == 0 || budget <= 0.0 {
        return None;
    }
    Some((errors as f64 / requests as f64) / budget)
}

/// Multi-window burn alerts (Google SRE workbook): fast burn is 14.4x over both 1 h and 5 min,
/// slow burn is 6x over both 6 h and 30 min.
pub const FAST_BURN: f64 = 14.4;
pub const SLOW_BURN: f64 = 6.0;

pub fn fast_burn(burn_1h: Option<f64>, burn_5m: Option<f64>) -> bool {
    burn_1h.is_some_and(|b| b >= FAST_BURN) && burn_5m.is_some_and(|b| b >= FAST_BURN)
}

pub fn slow_burn(burn_6h: Option<f64>, burn_30m: Option<f64>) -> bool {
    burn_6h.is_some_and(|b| b >= SLOW_BURN) && burn_30m.is_some_and(|b| b >= SLOW_BURN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[Option<f64>]) -> Vec<Point> {
        values
            .iter()
            .enumerate()
            .map(|(i, &value)| Point {
                slot: 100 + i as i64,
                value,
            })
            .collect()
    }

    #[test]
    fn two_consecutive_buckets_over_one_percent_is_a_rollback() {
        let j = judge(
            &series(&[Some(0.0), Some(0.03), Some(0.03)]),
            Comparison::Above,
            0.01,
            2,
        );
        assert!(j.breached);
        assert_eq!(j.breached_buckets, 2);
        assert_eq!(j.observed, Some(0.03));
    }

    #[test]
    fn one_bucket_is_not_two() {
        let j = judge(
            &series(&[Some(700.0), Some(100.0), Some(700.0)]),
            Comparison::Above,
            600.0,
            2,
        );
        assert!(!j.breached);
        assert_eq!(j.breached_buckets, 1);
    }

    #[test]
    fn a_single_bucket_rule_breaches_at_once() {
        assert!(judge(&series(&[Some(2100.0)]), Comparison::Above, 2000.0, 1).breached);
    }

    #[test]
    fn a_gap_between_buckets_ends_a_run() {
        let pts = vec![
            Point {
                slot: 1,
                value: Some(0.5),
            },
            Point {
                slot: 3,
                value: Some(0.5),
            },
        ];
        assert_eq!(judge(&pts, Comparison::Above, 0.01, 2).breached_buckets, 1);
        let pts = series(&[Some(0.5), None, Some(0.5)]);
        assert_eq!(judge(&pts, Comparison::Above, 0.01, 2).breached_buckets, 1);
    }

    #[test]
    fn low_cache_hit_rate_breaches_below() {
        let j = judge(
            &series(&[Some(10.0), Some(15.0)]),
            Comparison::Below,
            20.0,
            2,
        );
        assert!(j.breached);
        assert_eq!(j.observed, Some(10.0));
    }

    #[test]
    fn no_data_is_not_a_breach() {
        let j = judge(&[], Comparison::Above, 1.0, 1);
        assert!(!j.breached);
        assert_eq!(j.observed, None);
    }

    #[test]
    fn burn_rates_and_multi_window_alerts() {
        assert!((burn_rate(1, 1000, 0.999).unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(burn_rate(0, 0, 0.999), None);
        assert!(fast_burn(Some(15.0), Some(20.0)));
        assert!(!fast_burn(Some(15.0), Some(2.0)));
        assert!(slow_burn(Some(6.5), Some(7.0)));
        assert!(!slow_burn(None, Some(7.0)));
    }
}
