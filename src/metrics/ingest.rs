//! Ingest: the validation every recorded request passes (`check_request`, `check_request_time`,
//! called by `record_request(s)` in sql/metrics.sql, which also defines the metrics tables).

use crate::error;
use pgrx::prelude::*;

/// Validates a request's time: NULL (now) or a finite time; `infinity` would land in a bucket
/// in the year 294276. 22023 naming the argument (and the element `n` of a batch).
#[pg_extern(immutable, parallel_safe)]
fn check_request_time(at: Option<TimestampWithTimeZone>, n: Option<i64>) -> bool {
    match at {
        Some(t) if !t.is_finite() => match n {
            Some(n) => error::invalid_argument(
                "requests",
                format!("element {n}: at must be a finite time, got {t}"),
            ),
            None => error::invalid_argument("at", format!("must be a finite time, got {t}")),
        },
        _ => true,
    }
}

/// Validates one request; raises 22023 naming the problem. `n` is the element number in a batch.
#[pg_extern(immutable, parallel_safe)]
fn check_request(
    endpoint: Option<&str>,
    duration_ms: Option<f64>,
    status_code: Option<i32>,
    n: Option<i64>,
) -> bool {
    // The element prefix is only built for an error: this runs once per ingested row.
    let arg = if n.is_some() { "requests" } else { "" };
    let at = || n.map_or(String::new(), |n| format!("element {n}: "));
    let name = |field: &'static str| if arg.is_empty() { field } else { arg };
    match endpoint {
        None => error::invalid_argument(
            name("endpoint"),
            format!("{}endpoint must not be NULL", at()),
        ),
        Some("") => error::invalid_argument(
            name("endpoint"),
            format!("{}endpoint must not be empty", at()),
        ),
        Some(_) => {}
    }
    match duration_ms {
        None => error::invalid_argument(
            name("duration_ms"),
            format!("{}duration_ms must not be NULL", at()),
        ),
        Some(d) if !d.is_finite() => error::invalid_argument(
            name("duration_ms"),
            format!("{}duration_ms {d} is not finite", at()),
        ),
        Some(d) if d < 0.0 => error::invalid_argument(
            name("duration_ms"),
            format!("{}duration_ms {d} is negative", at()),
        ),
        Some(_) => {}
    }
    match status_code {
        None => error::invalid_argument(
            name("status_code"),
            format!("{}status_code must not be NULL", at()),
        ),
        Some(s) if !(100..=599).contains(&s) => error::invalid_argument(
            name("status_code"),
            format!("{}status_code {s} is outside 100..599", at()),
        ),
        Some(_) => {}
    }
    true
}

pgrx::extension_sql_file!(
    "../../sql/metrics.sql",
    name = "metrics",
    requires = [check_request, check_request_time, "sketch"]
);

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn sketch_percentiles_are_within_one_percent_of_percentile_disc() {
        let worst = Spi::get_one::<f64>(
            "WITH v AS (SELECT exp(3 + 2 * sin(i) + (i % 7) * 0.3) AS d FROM generate_series(1, 20000) i), \
                  q AS (SELECT unnest(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) AS q) \
             SELECT max(abs(sketch_quantile(s, q.q) - e) / e) FROM q, \
                    LATERAL (SELECT request_sketch(d, 200, NULL) AS s, \
                                    percentile_disc(q.q) WITHIN GROUP (ORDER BY d) AS e FROM v) x",
        );
        let worst = worst.unwrap().unwrap();
        assert!(worst <= 0.01, "worst relative error {worst}");
    }

    #[pg_test(
        error = "invalid value for argument \"requests\": element 1: status_code 42 is outside 100..599"
    )]
    fn a_status_code_outside_the_http_range_is_refused() {
        Spi::run("SELECT record_requests('[{\"endpoint\": \"/a\", \"duration_ms\": 1, \"status_code\": 42}]')").unwrap();
    }
}
