//! `health_check()`, cached in shared memory, and `health_live()`.
//!
//! A load balancer or uptime probe may call health_check() many times a second from many
//! sessions. The first call in a TTL window runs the operational preflight checks; every other call
//! in the window, from any backend, copies the stored result out of shared memory and does no
//! catalog work. Without `shared_preload_libraries` there is no shared memory: each backend keeps
//! its own cache, and the result says `"cache": "backend"`.

use crate::checks::preflight::{self, Thresholds};
use crate::jsonb_datum::{self, RawJsonb};
use crate::{own_sql, settings, shmem};
use pgrx::prelude::*;
use runbook_core::jsonb;
use runbook_core::status::{Status, health_word};
use std::cell::RefCell;

pgrx::extension_sql_file!(
    "../../sql/health.sql",
    name = "health",
    requires = [health_check, health_live]
);

/// `checks` details are cut to this many characters, so that a result always fits in shared
/// memory (`shmem::HEALTH_BODY_CAPACITY`).
const DETAIL_LIMIT: usize = 200;

thread_local! {
    static BACKEND_CACHE: RefCell<Option<(i64, Vec<u8>)>> = const { RefCell::new(None) };
}

fn jsonb_from_text(text: &str) -> Vec<u8> {
    let text = std::ffi::CString::new(text).unwrap_or_default();
    // SAFETY: jsonb_in takes a NUL-terminated cstring and returns a jsonb datum.
    let datum = unsafe {
        pgrx::direct_function_call_as_datum(pg_sys::jsonb_in, &[Some(text.as_ptr().into())])
    }
    .unwrap_or_else(|| crate::error::spi_failure("health_check", "jsonb_in returned NULL"));
    jsonb_datum::bytes_of(datum)
}

/// The bytes of `n` as a numeric datum, for a jsonb number.
fn numeric_bytes(n: i64) -> Vec<u8> {
    let argument = [Some(n.into())];
    // SAFETY: int8_numeric takes an int8 datum and returns a numeric datum.
    let numeric = unsafe { pgrx::direct_function_call_as_datum(pg_sys::int8_numeric, &argument) }
        .unwrap_or_else(|| crate::error::spi_failure("health_check", "int8_numeric returned NULL"));
    jsonb_datum::bytes_of(numeric)
}

/// This database's stored result: when it was computed, and the jsonb of every member but
/// `cached`, `age_ms` and `cache`.
fn load() -> Option<(i64, Vec<u8>)> {
    if !shmem::ready() {
        return BACKEND_CACHE.with(|c| c.borrow().clone());
    }
    shmem::load_health(crate::backend::database())
}

fn store(checked_at: i64, body: &[u8]) {
    if !shmem::ready() {
        BACKEND_CACHE.with(|c| *c.borrow_mut() = Some((checked_at, body.to_vec())));
        return;
    }
    shmem::store_health(crate::backend::database(), checked_at, body);
}

fn cut(text: &str) -> &str {
    match text.char_indices().nth(DETAIL_LIMIT) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Runs the operational checks and returns the body of a health result as jsonb bytes:
/// `status`, `checks` (each check's status word), `problems` (what each check that did not pass
/// observed, and its detail) and `checked_at`. A probe polling many times a second gets a few
/// hundred bytes when all is well; preflight_checks() has every observed value.
///
/// Query text never enters the body: it is shared with every caller, and pg_stat_activity shows
/// a query only to its own role and to members of pg_read_all_stats (preflight_checks() shows
/// what the caller may see).
fn compute_body(checked_at: i64) -> Vec<u8> {
    let mut thresholds = Thresholds::from_settings();
    thresholds.show_query_text = false;
    let rows = preflight::operational_checks(&thresholds);
    let worst = Status::worst(rows.iter().map(|r| r.status));
    let checks: serde_json::Map<String, serde_json::Value> = rows
        .iter()
        .map(|r| (r.check.to_string(), r.status.as_str().into()))
        .collect();
    let problems: serde_json::Map<String, serde_json::Value> = rows
        .iter()
        .filter(|r| r.status != Status::Pass)
        .map(|r| {
            let mut problem = serde_json::json!({ "observed": r.observed });
            if !r.detail.is_empty() {
                problem["detail"] = cut(&r.detail).into();
            }
            (r.check.to_string(), problem)
        })
        .collect();
    let checked_at = TimestampWithTimeZone::try_from(checked_at)
        .ok()
        .map(|t| t.to_iso_string())
        .unwrap_or_default();
    let body = serde_json::json!({
        "status": health_word(worst),
        "checks": checks,
        "problems": problems,
        "checked_at": checked_at,
    });
    jsonb_from_text(&body.to_string())
}

/// The service's health as jsonb: `status` ('healthy'|'degraded'|'unhealthy'), `checks`,
/// `problems`, `checked_at`, `cached`, `age_ms` and `cache`: 'shared' (one result per database
/// for every session, computed as the extension's owner so that it sees every session),
/// 'backend' (without shared_preload_libraries: per session), or 'private' when this session
/// overrides a pg_runbook setting (SET, ALTER ROLE ... SET, PGOPTIONS): its answer is then
/// computed as the caller at its own settings, never cached, and names the setting in
/// `private_because`, so no session can change what the others are served. Results are reused
/// for `pg_runbook.health_cache_ttl`. Callers: runbook_reader.
#[pg_extern(volatile, parallel_safe)]
fn health_check() -> RawJsonb {
    let now = crate::backend::now_micros();
    if let Some(setting) = settings::overridden_in_session() {
        let body = compute_body(now);
        let reason = format!("{setting} is set for this session");
        return with_call_members(&body, now, now, false, "private", Some(&reason));
    }
    let ttl_us = settings::HEALTH_CACHE_TTL_MS.get() as i64 * 1000;
    let (checked_at, body, cached) = match load() {
        Some((at, body)) if ttl_us > 0 && now - at < ttl_us && now >= at => (at, body, true),
        _ => {
            let body = own_sql::as_extension_owner(|| compute_body(now));
            store(now, &body);
            (now, body, false)
        }
    };
    let scope = if shmem::ready() { "shared" } else { "backend" };
    with_call_members(&body, now, checked_at, cached, scope, None)
}

/// The stored members plus this call's, written straight into jsonb's binary form: a cached call
/// parses no text and sorts nothing but a few keys.
fn with_call_members(
    body: &[u8],
    now: i64,
    checked_at: i64,
    cached: bool,
    scope: &str,
    private_because: Option<&str>,
) -> RawJsonb {
    let age_ms = numeric_bytes((now - checked_at) / 1000);
    let mut members = jsonb::read_object(body).unwrap_or_else(|e| {
        crate::error::spi_failure("health_check", format!("stored result unreadable: {}", e.0))
    });
    members.push(("cached", jsonb::Value::Bool(cached)));
    members.push(("age_ms", jsonb::Value::Numeric(&age_ms)));
    members.push(("cache", jsonb::Value::Str(scope)));
    if let Some(reason) = private_because {
        members.push(("private_because", jsonb::Value::Str(reason)));
    }
    RawJsonb::from_bytes(&jsonb::write_object(&members))
}

/// Liveness: true whenever the server can run a query. Costs nothing beyond the call itself.
#[pg_extern(immutable, parallel_safe)]
fn health_live() -> bool {
    true
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn a_session_override_gets_a_private_uncached_answer_naming_the_setting() {
        Spi::run("SET pg_runbook.health_cache_ttl = '1h'").unwrap();
        for _ in 0..2 {
            let result = Spi::get_one::<pgrx::JsonB>("SELECT health_check()")
                .unwrap()
                .unwrap()
                .0;
            assert_eq!(result["cached"], serde_json::json!(false));
            assert_eq!(result["cache"], serde_json::json!("private"));
            assert_eq!(
                result["private_because"],
                serde_json::json!("pg_runbook.health_cache_ttl is set for this session")
            );
        }
    }

    #[pg_test]
    fn a_zero_ttl_recomputes_every_call() {
        Spi::run("SET pg_runbook.health_cache_ttl = 0").unwrap();
        let result = Spi::get_one::<pgrx::JsonB>("SELECT health_check()")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(result["cached"], serde_json::json!(false));
        assert!(["healthy", "degraded", "unhealthy"].contains(&result["status"].as_str().unwrap()));
        assert!(
            ["PASS", "WARN", "FAIL"].contains(&result["checks"]["connections"].as_str().unwrap())
        );
    }

    #[pg_test]
    fn jsonb_written_from_parts_is_byte_for_byte_what_jsonb_in_makes() {
        use runbook_core::jsonb::{self, Value};
        let nested_datum = super::jsonb_from_text(r#"{"b": [1, 2], "a": {"x": 1.5}}"#);
        let nested = &nested_datum[jsonb::VARLENA_HEADER..];
        let big = super::numeric_bytes(1_234_567_890_123);
        let negative = super::numeric_bytes(-7);
        // Twenty filler keys push the entry count past 32, where offsets replace lengths.
        let fillers: Vec<String> = (0..20).map(|i| format!("filler_{i:02}")).collect();
        let mut members = vec![
            ("status", Value::Str("degraded")),
            ("cached", Value::Bool(true)),
            ("off", Value::Bool(false)),
            ("none", Value::Null),
            ("age_ms", Value::Numeric(&big)),
            ("n", Value::Numeric(&negative)),
            ("odd", Value::Str("é, \"quoted\"")),
            ("checks", Value::Container(nested)),
        ];
        members.extend(fillers.iter().map(|k| (k.as_str(), Value::Str("v"))));
        let text = r#"{"status": "degraded", "cached": true, "off": false, "none": null,
            "age_ms": 1234567890123, "n": -7, "odd": "é, \"quoted\"",
            "checks": {"b": [1, 2], "a": {"x": 1.5}}"#
            .to_string()
            + &fillers
                .iter()
                .map(|k| format!(r#", "{k}": "v""#))
                .collect::<String>()
            + "}";
        let expected = super::jsonb_from_text(&text);
        let written =
            crate::jsonb_datum::RawJsonb::from_bytes(&jsonb::write_object(&members)).to_bytes();
        assert_eq!(written, expected);
    }

    #[pg_test]
    fn health_live_answers_true() {
        assert_eq!(Spi::get_one::<bool>("SELECT health_live()"), Ok(Some(true)));
    }
}
