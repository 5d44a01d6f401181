//! Partition rules: reading a range partition's bound as PostgreSQL prints it
//! (`pg_get_expr(relpartbound, oid)`), the retention cutoff, and which partitions may be dropped;
//! and the skew rule of analyze_partition_distribution.
//!
//! Times are compared as wall-clock values in the session's time zone: PostgreSQL prints a
//! timestamptz bound in the session's zone, and the cutoff is computed from the session's
//! `current_date`, so both sides are on the same clock. Anything that does not parse exactly is
//! refused, so the caller skips it rather than guessing.

use std::cmp::Ordering;

/// A calendar date (proleptic Gregorian, years 1 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's days_from_civil).
fn days_from_civil(d: Date) -> i64 {
    let y = i64::from(d.year) - i64::from(d.month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(d.month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d.day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> Date {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    Date { year, month, day }
}

impl Date {
    pub fn new(year: i32, month: u32, day: u32) -> Option<Date> {
        if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// `YYYY-MM-DD` (ISO), as PostgreSQL prints dates with `DateStyle = ISO`.
    pub fn parse(s: &str) -> Option<Date> {
        let mut parts = s.splitn(3, '-');
        let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
        if y.len() < 4
            || m.len() != 2
            || d.len() != 2
            || ![y, m, d]
                .iter()
                .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
    }

    /// The same day `n` months earlier, clamped to the end of a shorter month (as PostgreSQL's
    /// `date - interval 'n months'` does: 2024-03-31 minus one month is 2024-02-29).
    pub fn minus_months(self, n: i32) -> Date {
        let total = self.year as i64 * 12 + (self.month as i64 - 1) - n as i64;
        let year = total.div_euclid(12) as i32;
        let month = (total.rem_euclid(12) + 1) as u32;
        Date {
            year,
            month,
            day: self.day.min(days_in_month(year, month)),
        }
    }

    pub fn plus_days(self, n: i64) -> Date {
        civil_from_days(days_from_civil(self) + n)
    }
}

const DAY_MICROS: i64 = 86_400_000_000;

/// A wall-clock time: a date and microseconds since its midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalTime {
    pub date: Date,
    pub micros: i64,
}

impl LocalTime {
    pub fn midnight(date: Date) -> LocalTime {
        LocalTime { date, micros: 0 }
    }

    /// Parses `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS[.ffffff]`, optionally followed by a UTC offset
    /// (`+00`, `-05:30`), which is ignored: PostgreSQL prints it in the session's zone.
    pub fn parse(s: &str) -> Option<LocalTime> {
        let (date, rest) = match s.split_once(' ') {
            Some((d, r)) => (Date::parse(d)?, Some(r)),
            None => (Date::parse(s)?, None),
        };
        let Some(rest) = rest else {
            return Some(LocalTime::midnight(date));
        };
        let clock_end = rest.find(['+', '-']).unwrap_or(rest.len());
        let (clock, offset) = rest.split_at(clock_end);
        if !offset.is_empty() {
            let o = &offset[1..];
            let ok = o
                .split(':')
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()));
            if !ok || o.split(':').count() > 3 {
                return None;
            }
        }
        let mut hms = clock.split(':');
        let (h, m, sec) = (hms.next()?, hms.next()?, hms.next()?);
        if hms.next().is_some() || h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(h)
            || !digits(m)
            || !digits(whole)
            || whole.len() != 2
            || (!frac.is_empty() && !digits(frac))
            || frac.len() > 6
        {
            return None;
        }
        let (h, m, s): (i64, i64, i64) = (h.parse().ok()?, m.parse().ok()?, whole.parse().ok()?);
        if h > 24 || m > 59 || s > 60 {
            return None;
        }
        let frac_micros: i64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}").parse().ok()?
        };
        let micros = ((h * 60 + m) * 60 + s) * 1_000_000 + frac_micros;
        Some(LocalTime { date, micros }.normalized())
    }

    fn normalized(self) -> LocalTime {
        let days = self.micros.div_euclid(DAY_MICROS);
        LocalTime {
            date: self.date.plus_days(days),
            micros: self.micros.rem_euclid(DAY_MICROS),
        }
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl std::fmt::Display for LocalTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.micros == 0 {
            return write!(f, "{}", self.date);
        }
        let s = self.micros / 1_000_000;
        write!(
            f,
            "{} {:02}:{:02}:{:02}",
            self.date,
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }
}

/// The retention cutoff: midnight of `today` minus the keep interval's months, days and
/// microseconds (in that order, as PostgreSQL applies an interval). Rows at or after it are kept.
pub fn cutoff(today: Date, months: i32, days: i32, micros: i64) -> LocalTime {
    let date = today.minus_months(months).plus_days(-i64::from(days));
    LocalTime {
        date,
        micros: -micros,
    }
    .normalized()
}

/// One end of a range partition's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundValue {
    MinValue,
    MaxValue,
    At(LocalTime),
}

/// A partition bound, as far as retention needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionBound {
    Default,
    Range { from: BoundValue, to: BoundValue },
}

/// Reads one `( ... )` bound list holding a single value: `MINVALUE`, `MAXVALUE` or a quoted
/// date/time literal (`'infinity'` and `'-infinity'` included).
fn parse_bound_value(s: &str) -> Result<BoundValue, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .ok_or_else(|| format!("bound value {s} is not parenthesised"))?
        .trim();
    match inner {
        "MINVALUE" => return Ok(BoundValue::MinValue),
        "MAXVALUE" => return Ok(BoundValue::MaxValue),
        _ => {}
    }
    let literal = inner
        .strip_prefix('\'')
        .and_then(|x| x.strip_suffix('\''))
        .filter(|x| !x.contains('\''))
        .ok_or_else(|| format!("bound {inner} is not a single time literal"))?;
    match literal {
        "infinity" => Ok(BoundValue::MaxValue),
        "-infinity" => Ok(BoundValue::MinValue),
        _ => LocalTime::parse(literal)
            .map(BoundValue::At)
            .ok_or_else(|| format!("bound '{literal}' is not an ISO date or timestamp")),
    }
}

/// Parses the output of `pg_get_expr(relpartbound, oid)` for a single-column range partition.
pub fn parse_bound(expr: &str) -> Result<PartitionBound, String> {
    let expr = expr.trim();
    if expr == "DEFAULT" {
        return Ok(PartitionBound::Default);
    }
    let body = expr
        .strip_prefix("FOR VALUES FROM ")
        .ok_or_else(|| format!("not a range bound: {expr}"))?;
    let (from, to) = body
        .split_once(" TO ")
        .ok_or_else(|| format!("not a range bound: {expr}"))?;
    if from.contains(',') || to.contains(',') {
        return Err(format!("multi-column bound: {expr}"));
    }
    Ok(PartitionBound::Range {
        from: parse_bound_value(from)?,
        to: parse_bound_value(to)?,
    })
}

/// What retention does with one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every row it can hold is older than the cutoff.
    Drop,
    /// It may hold rows at or after the cutoff.
    Keep,
    /// Never dropped automatically; the reason is reported.
    Skip(String),
}

/// Whether a partition with this bound expression may be dropped for `cutoff`: only a range
/// partition whose (exclusive) upper bound is at or before the cutoff.
pub fn judge_partition(bound_expr: &str, cutoff: LocalTime) -> Verdict {
    match parse_bound(bound_expr) {
        Err(why) => Verdict::Skip(format!("cannot read the bound safely ({why})")),
        Ok(PartitionBound::Default) => {
            Verdict::Skip("the default partition is never dropped".into())
        }
        Ok(PartitionBound::Range {
            to: BoundValue::MaxValue,
            ..
        }) => Verdict::Keep,
        Ok(PartitionBound::Range {
            to: BoundValue::MinValue,
            ..
        }) => Verdict::Skip("upper bound MINVALUE: an empty range".into()),
        Ok(PartitionBound::Range {
            to: BoundValue::At(upper),
            ..
        }) => match upper.cmp(&cutoff) {
            Ordering::Less | Ordering::Equal => Verdict::Drop,
            Ordering::Greater => Verdict::Keep,
        },
    }
}

/// The skew rule: with `n` partitions, a partition is skewed when it holds more than `factor`
/// times its even share (`total / n`). Fewer than two partitions, or no rows, are never skewed.
pub fn skewed(rows: &[f64], factor: f64) -> Vec<bool> {
    let total: f64 = rows.iter().map(|r| r.max(0.0)).sum();
    if rows.len() < 2 || total <= 0.0 {
        return vec![false; rows.len()];
    }
    let even = total / rows.len() as f64;
    rows.iter().map(|r| *r > factor * even).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> Date {
        Date::new(y, m, day).unwrap()
    }

    #[test]
    fn subtracting_months_clamps_to_the_end_of_a_shorter_month() {
        assert_eq!(d(2024, 3, 31).minus_months(1), d(2024, 2, 29));
        assert_eq!(d(2023, 3, 31).minus_months(1), d(2023, 2, 28));
        assert_eq!(d(2026, 1, 15).minus_months(24), d(2024, 1, 15));
        assert_eq!(d(2026, 1, 15).minus_months(13), d(2024, 12, 15));
        assert_eq!(d(2026, 1, 15).minus_months(0), d(2026, 1, 15));
    }

    #[test]
    fn day_arithmetic_crosses_months_and_leap_days() {
        assert_eq!(d(2024, 3, 1).plus_days(-1), d(2024, 2, 29));
        assert_eq!(d(2023, 12, 31).plus_days(1), d(2024, 1, 1));
        assert_eq!(d(1970, 1, 1).plus_days(0), d(1970, 1, 1));
    }

    #[test]
    fn cutoff_applies_months_then_days_then_time() {
        assert_eq!(
            cutoff(d(2026, 5, 20), 24, 0, 0),
            LocalTime::midnight(d(2024, 5, 20))
        );
        assert_eq!(
            cutoff(d(2026, 5, 20), 0, 90, 0),
            LocalTime::midnight(d(2026, 2, 19))
        );
        let c = cutoff(d(2026, 5, 20), 0, 0, 3_600_000_000);
        assert_eq!(
            c,
            LocalTime {
                date: d(2026, 5, 19),
                micros: 23 * 3_600_000_000
            }
        );
    }

    #[test]
    fn bounds_of_date_timestamp_and_timestamptz_keys_parse() {
        assert_eq!(
            parse_bound("FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')"),
            Ok(PartitionBound::Range {
                from: BoundValue::At(LocalTime::midnight(d(2024, 1, 1))),
                to: BoundValue::At(LocalTime::midnight(d(2024, 2, 1))),
            })
        );
        let tz = parse_bound(
            "FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2024-02-01 12:30:00.5-05:30')",
        )
        .unwrap();
        assert_eq!(
            tz,
            PartitionBound::Range {
                from: BoundValue::At(LocalTime::midnight(d(2024, 1, 1))),
                to: BoundValue::At(LocalTime {
                    date: d(2024, 2, 1),
                    micros: 45_000_500_000
                }),
            }
        );
        assert_eq!(
            parse_bound("FOR VALUES FROM (MINVALUE) TO ('infinity')"),
            Ok(PartitionBound::Range {
                from: BoundValue::MinValue,
                to: BoundValue::MaxValue
            })
        );
        assert_eq!(parse_bound("DEFAULT"), Ok(PartitionBound::Default));
    }

    #[test]
    fn anything_unusual_is_refused_rather_than_guessed() {
        for bad in [
            "FOR VALUES IN ('2024-01-01')",
            "FOR VALUES WITH (modulus 4, remainder 0)",
            "FOR VALUES FROM ('2024-01-01', 1) TO ('2024-02-01', 1)",
            "FOR VALUES FROM ('01/01/2024') TO ('02/01/2024')",
            "FOR VALUES FROM ('2024-01-01 BC') TO ('2024-02-01 BC')",
            "FOR VALUES FROM (0) TO (100)",
            "FOR VALUES FROM ('2024-02-30') TO ('2024-03-01')",
            "FOR VALUES FROM ('a''b') TO ('2024-03-01')",
        ] {
            assert!(parse_bound(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn only_partitions_ending_at_or_before_the_cutoff_are_dropped() {
        let c = LocalTime::midnight(d(2024, 5, 20));
        let month = |from: &str, to: &str| format!("FOR VALUES FROM ('{from}') TO ('{to}')");
        assert_eq!(
            judge_partition(&month("2024-04-01", "2024-05-01"), c),
            Verdict::Drop
        );
        assert_eq!(
            judge_partition(&month("2024-04-20", "2024-05-20"), c),
            Verdict::Drop
        );
        // May holds rows from before and after the 20th: it may hold newer rows, so it stays.
        assert_eq!(
            judge_partition(&month("2024-05-01", "2024-06-01"), c),
            Verdict::Keep
        );
        assert_eq!(
            judge_partition(
                "FOR VALUES FROM ('2024-05-19 00:00:00+02') TO ('2024-05-20 00:00:00.000001+02')",
                c
            ),
            Verdict::Keep
        );
        assert_eq!(
            judge_partition("FOR VALUES FROM (MINVALUE) TO ('2020-01-01')", c),
            Verdict::Drop
        );
        assert_eq!(
            judge_partition("FOR VALUES FROM ('2020-01-01') TO (MAXVALUE)", c),
            Verdict::Keep
        );
        assert!(matches!(judge_partition("DEFAULT", c), Verdict::Skip(_)));
        assert!(matches!(
            judge_partition("FOR VALUES FROM (1) TO (2)", c),
            Verdict::Skip(_)
        ));
    }

    #[test]
    fn a_partition_far_above_its_even_share_is_skewed() {
        assert_eq!(
            skewed(&[10.0, 10.0, 10.0, 100.0], 2.0),
            vec![false, false, false, true]
        );
        assert_eq!(skewed(&[10.0, 12.0, 9.0], 2.0), vec![false, false, false]);
        assert_eq!(skewed(&[100.0], 2.0), vec![false]);
        assert_eq!(skewed(&[0.0, 0.0], 2.0), vec![false, false]);
    }
}
