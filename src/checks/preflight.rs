//! Pre-deployment checks: `preflight_checks()` and its raising twin `assert_preflight()`.
//!
//! Each check reads one statistics view, and runbook-core judges the observation against the
//! thresholds. Every threshold is a named argument whose default is its `pg_runbook.*` setting.

use crate::error;
use crate::own_sql::{self, col, human_ms};
use crate::policy::invalid_indexes;
use crate::settings;
use pgrx::prelude::*;
use runbook_core::status::{Status, judge_high, judge_low};

pgrx::extension_sql_file!(
    "../../sql/preflight.sql",
    name = "preflight",
    requires = [runbook_setting, preflight_checks, assert_preflight]
);

/// The thresholds of one preflight run.
#[derive(Debug, Clone)]
pub struct Thresholds {
    pub connections_warn_pct: f64,
    pub connections_fail_pct: f64,
    pub long_query_warn_ms: f64,
    pub long_query_fail_ms: f64,
    pub lock_wait_fail_ms: f64,
    pub idle_in_transaction_warn_ms: f64,
    pub cache_hit_warn_pct: f64,
    pub cache_hit_fail_pct: f64,
    pub replication_lag_warn_ms: f64,
    pub replication_lag_fail_ms: f64,
    pub xid_age_warn: i64,
    pub xid_age_fail: i64,
    pub min_server_version: i32,
    /// Whether session details carry the start of each query (preflight_checks: as
    /// pg_stat_activity shows them to the caller); the shared health result never does.
    pub show_query_text: bool,
}

impl Thresholds {
    /// The thresholds as the `pg_runbook.*` settings give them now.
    pub fn from_settings() -> Self {
        Thresholds {
            connections_warn_pct: settings::CONNECTIONS_WARN_PCT.get(),
            connections_fail_pct: settings::CONNECTIONS_FAIL_PCT.get(),
            long_query_warn_ms: settings::LONG_QUERY_WARN_MS.get() as f64,
            long_query_fail_ms: settings::LONG_QUERY_FAIL_MS.get() as f64,
            lock_wait_fail_ms: settings::LOCK_WAIT_FAIL_MS.get() as f64,
            idle_in_transaction_warn_ms: settings::IDLE_IN_TRANSACTION_WARN_MS.get() as f64,
            cache_hit_warn_pct: settings::CACHE_HIT_WARN_PCT.get(),
            cache_hit_fail_pct: settings::CACHE_HIT_FAIL_PCT.get(),
            replication_lag_warn_ms: settings::REPLICATION_LAG_WARN_MS.get() as f64,
            replication_lag_fail_ms: settings::REPLICATION_LAG_FAIL_MS.get() as f64,
            xid_age_warn: settings::XID_AGE_WARN.get() as i64,
            xid_age_fail: settings::XID_AGE_FAIL.get() as i64,
            min_server_version: settings::MIN_SERVER_VERSION.get(),
            show_query_text: true,
        }
    }
}

/// One row of a check's output.
#[derive(Debug, Clone)]
pub struct CheckRow {
    pub check: &'static str,
    pub status: Status,
    pub observed: String,
    pub threshold: String,
    pub detail: String,
}

impl CheckRow {
    fn new(
        check: &'static str,
        status: Status,
        observed: String,
        threshold: String,
        detail: String,
    ) -> Self {
        CheckRow {
            check,
            status,
            observed,
            threshold,
            detail,
        }
    }
}

/// The rows of preflight_checks() and assert_preflight(). pgrx needs the full type spelled out
/// in each `#[pg_extern]` signature (it does not resolve aliases), so they repeat it.
pub type CheckOutput = TableIterator<
    'static,
    (
        name!(check, String),
        name!(status, String),
        name!(observed, String),
        name!(threshold, String),
        name!(detail, String),
    ),
>;

fn into_output(rows: Vec<CheckRow>) -> CheckOutput {
    TableIterator::new(rows.into_iter().map(|r| {
        (
            r.check.to_string(),
            r.status.as_str().to_string(),
            r.observed,
            r.threshold,
            r.detail,
        )
    }))
}

/// The checks that describe the server's state right now (health_check runs these).
pub fn operational_checks(t: &Thresholds) -> Vec<CheckRow> {
    own_sql::with_catalog_settings(|| {
        vec![
            connections(t),
            long_running_queries(t),
            blocked_lock_waits(t),
            idle_in_transaction(t),
            cache_hit_ratio(t),
            replication_lag(t),
            xid_age(t),
            invalid_indexes(),
        ]
    })
}

/// Every check: the operational ones plus the server's configuration.
pub fn all_checks(t: &Thresholds) -> Vec<CheckRow> {
    let mut rows = operational_checks(t);
    rows.push(server_version(t));
    rows.push(pg_stat_statements());
    rows
}

fn connections(t: &Thresholds) -> CheckRow {
    let (used, max) = own_sql::select_one(
        "SELECT count(*) FILTER (WHERE backend_type = 'client backend'), \
                current_setting('max_connections')::int8 \
         FROM pg_catalog.pg_stat_activity",
        &[],
        |r| {
            (
                col::<i64>(r, 1).unwrap_or(0),
                col::<i64>(r, 2).unwrap_or(1).max(1),
            )
        },
    );
    let pct = used as f64 * 100.0 / max as f64;
    CheckRow::new(
        "connections",
        judge_high(
            pct,
            Some(t.connections_warn_pct),
            Some(t.connections_fail_pct),
            true,
        ),
        format!("{used}/{max} ({pct:.1}%)"),
        format!(
            "warn >= {}%, fail >= {}%",
            t.connections_warn_pct, t.connections_fail_pct
        ),
        "client backends / max_connections".into(),
    )
}

/// Sessions (other than this one) in some state for longer than `min_ms`, longest first:
/// (pid, milliseconds, the start of their query).
fn sessions_in_state(states: &str, since_column: &str, min_ms: f64) -> Vec<(i32, f64, String)> {
    let sql = format!(
        "SELECT pid, EXTRACT(epoch FROM clock_timestamp() - {since_column})::float8 * 1000, \
                left(regexp_replace(query, '\\s+', ' ', 'g'), 60) \
         FROM pg_catalog.pg_stat_activity \
         WHERE state IN ({states}) AND backend_type = 'client backend' \
           AND pid <> pg_catalog.pg_backend_pid() \
           AND clock_timestamp() - {since_column} > make_interval(secs => $1 / 1000.0) \
         ORDER BY {since_column}"
    );
    own_sql::select(&sql, &[min_ms.into()], |r| {
        (
            col::<i32>(r, 1).unwrap_or(0),
            col::<f64>(r, 2).unwrap_or(0.0),
            col::<String>(r, 3).unwrap_or_default(),
        )
    })
}

fn describe_sessions(sessions: &[(i32, f64, String)], show_query_text: bool) -> String {
    let listed: Vec<String> = sessions
        .iter()
        .take(5)
        .map(|(pid, ms, query)| match show_query_text {
            true => format!("pid {pid} for {}: {query}", human_ms(*ms)),
            false => format!("pid {pid} for {}", human_ms(*ms)),
        })
        .collect();
    let more = sessions.len().saturating_sub(5);
    if more > 0 {
        format!("{}; and {more} more", listed.join("; "))
    } else {
        listed.join("; ")
    }
}

fn long_running_queries(t: &Thresholds) -> CheckRow {
    let sessions = sessions_in_state(
        "'active'",
        "query_start",
        t.long_query_warn_ms.min(t.long_query_fail_ms),
    );
    let longest = sessions.first().map_or(0.0, |s| s.1);
    CheckRow::new(
        "long_running_queries",
        judge_high(
            longest,
            Some(t.long_query_warn_ms),
            Some(t.long_query_fail_ms),
            false,
        ),
        if sessions.is_empty() {
            "none".into()
        } else {
            format!("{} running, longest {}", sessions.len(), human_ms(longest))
        },
        format!(
            "warn > {}, fail > {}",
            human_ms(t.long_query_warn_ms),
            human_ms(t.long_query_fail_ms)
        ),
        describe_sessions(&sessions, t.show_query_text),
    )
}

fn idle_in_transaction(t: &Thresholds) -> CheckRow {
    let sessions = sessions_in_state(
        "'idle in transaction', 'idle in transaction (aborted)'",
        "state_change",
        t.idle_in_transaction_warn_ms,
    );
    let longest = sessions.first().map_or(0.0, |s| s.1);
    CheckRow::new(
        "idle_in_transaction",
        if sessions.is_empty() {
            Status::Pass
        } else {
            Status::Warn
        },
        if sessions.is_empty() {
            "none".into()
        } else {
            format!("{} idle, longest {}", sessions.len(), human_ms(longest))
        },
        format!("warn > {}", human_ms(t.idle_in_transaction_warn_ms)),
        describe_sessions(&sessions, t.show_query_text),
    )
}

fn blocked_lock_waits(t: &Thresholds) -> CheckRow {
    let sql = "SELECT l.pid, EXTRACT(epoch FROM pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) l.waitstart)::pg_catalog.float8 \
                OPERATOR(pg_catalog.*) 1000 AS waited_ms, \
                pg_catalog.array_to_string(pg_catalog.pg_blocking_pids(l.pid), ','), \
                l.mode OPERATOR(pg_catalog.||) ' on ' OPERATOR(pg_catalog.||) \
                COALESCE(l.relation::pg_catalog.regclass::pg_catalog.text, l.locktype) \
         FROM pg_catalog.pg_locks l \
         WHERE NOT l.granted AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() \
         ORDER BY waited_ms DESC NULLS LAST";
    let waits = own_sql::select(sql, &[], |r| {
        (
            col::<i32>(r, 1).unwrap_or(0),
            col::<f64>(r, 2).unwrap_or(0.0),
            col::<String>(r, 3).unwrap_or_default(),
            col::<String>(r, 4).unwrap_or_default(),
        )
    });
    let longest = waits.first().map_or(0.0, |w| w.1);
    let status = match judge_high(longest, None, Some(t.lock_wait_fail_ms), false) {
        Status::Pass if !waits.is_empty() => Status::Warn,
        s => s,
    };
    let detail: Vec<String> = waits
        .iter()
        .take(5)
        .map(|(pid, ms, blockers, what)| {
            format!(
                "pid {pid} waiting {} for {what}, blocked by pid {blockers}",
                human_ms(*ms)
            )
        })
        .collect();
    CheckRow::new(
        "blocked_lock_waits",
        status,
        if waits.is_empty() {
            "none".into()
        } else {
            format!("{} waiting, longest {}", waits.len(), human_ms(longest))
        },
        format!("warn on any wait, fail > {}", human_ms(t.lock_wait_fail_ms)),
        detail.join("; "),
    )
}

fn cache_hit_ratio(t: &Thresholds) -> CheckRow {
    let (hit, read) = own_sql::select_one(
        "SELECT COALESCE(blks_hit, 0), COALESCE(blks_read, 0) FROM pg_catalog.pg_stat_database \
         WHERE datname = pg_catalog.current_database()",
        &[],
        |r| (col::<i64>(r, 1).unwrap_or(0), col::<i64>(r, 2).unwrap_or(0)),
    );
    let threshold = format!(
        "warn < {}%, fail < {}%",
        t.cache_hit_warn_pct, t.cache_hit_fail_pct
    );
    if hit + read == 0 {
        return CheckRow::new(
            "cache_hit_ratio",
            Status::Pass,
            "no reads yet".into(),
            threshold,
            String::new(),
        );
    }
    let pct = hit as f64 * 100.0 / (hit + read) as f64;
    CheckRow::new(
        "cache_hit_ratio",
        judge_low(pct, Some(t.cache_hit_warn_pct), Some(t.cache_hit_fail_pct)),
        format!("{pct:.2}%"),
        threshold,
        format!("{hit} blocks hit, {read} read since statistics reset"),
    )
}

fn replication_lag(t: &Thresholds) -> CheckRow {
    let standbys = own_sql::select(
        "SELECT COALESCE(application_name, '') || '@' || COALESCE(client_addr::text, 'local'), \
                COALESCE(EXTRACT(epoch FROM replay_lag)::float8 * 1000, 0) \
         FROM pg_catalog.pg_stat_replication ORDER BY 2 DESC",
        &[],
        |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<f64>(r, 2).unwrap_or(0.0),
            )
        },
    );
    let threshold = format!(
        "warn > {}, fail > {}",
        human_ms(t.replication_lag_warn_ms),
        human_ms(t.replication_lag_fail_ms)
    );
    let Some((worst_name, worst_ms)) = standbys.first() else {
        return CheckRow::new(
            "replication_lag",
            Status::Pass,
            "no standbys".into(),
            threshold,
            String::new(),
        );
    };
    let detail: Vec<String> = standbys
        .iter()
        .map(|(n, ms)| format!("{n}: {}", human_ms(*ms)))
        .collect();
    CheckRow::new(
        "replication_lag",
        judge_high(
            *worst_ms,
            Some(t.replication_lag_warn_ms),
            Some(t.replication_lag_fail_ms),
            false,
        ),
        format!("{} on {worst_name}", human_ms(*worst_ms)),
        threshold,
        detail.join("; "),
    )
}

fn xid_age(t: &Thresholds) -> CheckRow {
    let (datname, age) = own_sql::select_one(
        "SELECT datname::text, age(datfrozenxid)::int8 FROM pg_catalog.pg_database \
         ORDER BY 2 DESC LIMIT 1",
        &[],
        |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<i64>(r, 2).unwrap_or(0),
            )
        },
    );
    CheckRow::new(
        "xid_age",
        judge_high(
            age as f64,
            Some(t.xid_age_warn as f64),
            Some(t.xid_age_fail as f64),
            false,
        ),
        format!("{age} ({datname})"),
        format!("warn > {}, fail > {}", t.xid_age_warn, t.xid_age_fail),
        "age(datfrozenxid) of the oldest database".into(),
    )
}

fn invalid_indexes() -> CheckRow {
    // An index still being built concurrently is invalid too; it is reported, but only a build
    // that is over (a failed CREATE INDEX CONCURRENTLY) fails the check.
    let (building, failed): (Vec<_>, Vec<_>) = invalid_indexes::all()
        .into_iter()
        .partition(|ix| ix.builder.is_some());
    let found = building.len() + failed.len();
    // Each failed build with what mends it: the reason, and the statements to run one by one.
    let failed: Vec<String> = failed
        .iter()
        .map(|ix| {
            let (why, statements) = ix.advice();
            format!("{} ({why}; run: {})", ix.name, statements.join("; "))
        })
        .collect();
    let building: Vec<&str> = building.iter().map(|ix| ix.name.as_str()).collect();
    let status = if !failed.is_empty() {
        Status::Fail
    } else if !building.is_empty() {
        Status::Warn
    } else {
        Status::Pass
    };
    let mut detail = Vec::new();
    if !failed.is_empty() {
        detail.push(format!("invalid: {}", failed.join(", ")));
    }
    if !building.is_empty() {
        detail.push(format!("still being built: {}", building.join(", ")));
    }
    CheckRow::new(
        "invalid_indexes",
        status,
        found.to_string(),
        "fail on any".into(),
        detail.join("; "),
    )
}

fn server_version(t: &Thresholds) -> CheckRow {
    let num = own_sql::select_one(
        "SELECT current_setting('server_version_num')::int4",
        &[],
        |r| col::<i32>(r, 1).unwrap_or(0),
    );
    let major = num / 10_000;
    CheckRow::new(
        "server_version",
        if major < t.min_server_version {
            Status::Warn
        } else {
            Status::Pass
        },
        major.to_string(),
        format!("warn < {}", t.min_server_version),
        format!("server_version_num {num}"),
    )
}

fn pg_stat_statements() -> CheckRow {
    let (installed, preloaded) = own_sql::select_one(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_stat_statements'), \
                'pg_stat_statements' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))",
        &[],
        |r| {
            (
                col::<bool>(r, 1).unwrap_or(false),
                col::<bool>(r, 2).unwrap_or(false),
            )
        },
    );
    let (status, observed, detail) = match (installed, preloaded) {
        (true, true) => (Status::Pass, "available", ""),
        (false, true) => (
            Status::Warn,
            "not installed",
            "run CREATE EXTENSION pg_stat_statements",
        ),
        (_, false) => (
            Status::Warn,
            "not preloaded",
            "add pg_stat_statements to shared_preload_libraries and restart",
        ),
    };
    CheckRow::new(
        "pg_stat_statements",
        status,
        observed.into(),
        "warn when unavailable".into(),
        detail.into(),
    )
}

// ---- SQL surface -------------------------------------------------------------------------------

fn non_negative(arg: &str, value: Option<f64>) -> f64 {
    let v = error::required(arg, value);
    if !v.is_finite() || v < 0.0 {
        error::invalid_argument(arg, format!("{v} is negative"));
    }
    v
}

/// A percentage argument: required, 0 to 100, else 22023 naming it.
pub(crate) fn percent(arg: &str, value: Option<f64>) -> f64 {
    let v = non_negative(arg, value);
    if v > 100.0 {
        error::invalid_argument(arg, format!("{v} is not a percentage between 0 and 100"));
    }
    v
}

fn duration_ms(arg: &str, value: Option<Interval>) -> f64 {
    let ms = own_sql::interval_ms(&error::required(arg, value));
    if ms < 0.0 {
        error::invalid_argument(arg, "a negative interval is not a threshold");
    }
    ms
}

fn ordered(warn_arg: &str, warn: f64, fail_arg: &str, fail: f64, show: impl Fn(f64) -> String) {
    if warn > fail {
        error::invalid_argument(
            warn_arg,
            format!("{} is above {fail_arg} ({})", show(warn), show(fail)),
        );
    }
}

/// Reads the threshold arguments of preflight_checks / assert_preflight, refusing NULL, negative
/// and contradictory values before any check runs.
#[allow(clippy::too_many_arguments)]
fn thresholds_from_args(
    connections_warn_pct: Option<f64>,
    connections_fail_pct: Option<f64>,
    long_query_warn: Option<Interval>,
    long_query_fail: Option<Interval>,
    lock_wait_fail: Option<Interval>,
    idle_in_transaction_warn: Option<Interval>,
    cache_hit_warn_pct: Option<f64>,
    cache_hit_fail_pct: Option<f64>,
    replication_lag_warn: Option<Interval>,
    replication_lag_fail: Option<Interval>,
    xid_age_warn: Option<i64>,
    xid_age_fail: Option<i64>,
    min_server_version: Option<i32>,
) -> Thresholds {
    let t = Thresholds {
        connections_warn_pct: percent("connections_warn_pct", connections_warn_pct),
        connections_fail_pct: percent("connections_fail_pct", connections_fail_pct),
        long_query_warn_ms: duration_ms("long_query_warn", long_query_warn),
        long_query_fail_ms: duration_ms("long_query_fail", long_query_fail),
        lock_wait_fail_ms: duration_ms("lock_wait_fail", lock_wait_fail),
        idle_in_transaction_warn_ms: duration_ms(
            "idle_in_transaction_warn",
            idle_in_transaction_warn,
        ),
        cache_hit_warn_pct: percent("cache_hit_warn_pct", cache_hit_warn_pct),
        cache_hit_fail_pct: percent("cache_hit_fail_pct", cache_hit_fail_pct),
        replication_lag_warn_ms: duration_ms("replication_lag_warn", replication_lag_warn),
        replication_lag_fail_ms: duration_ms("replication_lag_fail", replication_lag_fail),
        xid_age_warn: non_negative("xid_age_warn", xid_age_warn.map(|v| v as f64)) as i64,
        xid_age_fail: non_negative("xid_age_fail", xid_age_fail.map(|v| v as f64)) as i64,
        min_server_version: non_negative("min_server_version", min_server_version.map(f64::from))
            as i32,
        show_query_text: true,
    };
    let pct = |v: f64| format!("{v}%");
    let count = |v: f64| format!("{v}");
    ordered(
        "connections_warn_pct",
        t.connections_warn_pct,
        "connections_fail_pct",
        t.connections_fail_pct,
        pct,
    );
    ordered(
        "long_query_warn",
        t.long_query_warn_ms,
        "long_query_fail",
        t.long_query_fail_ms,
        human_ms,
    );
    ordered(
        "replication_lag_warn",
        t.replication_lag_warn_ms,
        "replication_lag_fail",
        t.replication_lag_fail_ms,
        human_ms,
    );
    ordered(
        "xid_age_warn",
        t.xid_age_warn as f64,
        "xid_age_fail",
        t.xid_age_fail as f64,
        count,
    );
    ordered(
        "cache_hit_fail_pct",
        t.cache_hit_fail_pct,
        "cache_hit_warn_pct",
        t.cache_hit_warn_pct,
        pct,
    );
    t
}

/// The current value of a pg_runbook setting, as text.
///
/// The check functions use it in their argument defaults. Calling it loads the library, so the
/// `pg_runbook.*` settings are defined even in a session that has not used the extension yet.
#[pg_extern(stable, parallel_safe)]
pub(crate) fn runbook_setting(name: Option<&str>) -> String {
    let name = error::required("name", name);
    if !name.starts_with("pg_runbook.") {
        error::invalid_argument("name", format!("\"{name}\" is not a pg_runbook setting"));
    }
    let cname = std::ffi::CString::new(name)
        .unwrap_or_else(|_| error::invalid_argument("name", "contains a NUL byte"));
    // SAFETY: cname is NUL-terminated and outlives the call; with missing_ok = true an unknown
    // name is NULL rather than an ERROR, and a NULL varname pointer is allowed.
    let value =
        unsafe { pg_sys::GetConfigOptionByName(cname.as_ptr(), std::ptr::null_mut(), true) };
    if value.is_null() {
        error::undefined_object("setting", name);
    }
    // SAFETY: not NULL (checked above): GetConfigOptionByName returns a palloc'd NUL-terminated
    // copy of the value, which lives until the end of this function call.
    unsafe { std::ffi::CStr::from_ptr(value) }
        .to_string_lossy()
        .into_owned()
}

/// preflight_checks() and assert_preflight() take the same thresholds, each defaulting to its
/// pg_runbook setting, and return the same rows; pgrx needs them spelled out in each signature,
/// so this macro writes them once. `$lead` are the arguments before the thresholds.
macro_rules! preflight_function {
    ($(#[$attr:meta])* fn $name:ident($($lead:tt)*)(|$t:ident| $body:expr)) => {
        $(#[$attr])*
        #[pg_extern(volatile, parallel_safe, requires = [runbook_setting])]
        #[allow(clippy::too_many_arguments)]
        fn $name(
            $($lead)*
            connections_warn_pct: default!(
                Option<f64>,
                "@extschema@.runbook_setting('pg_runbook.connections_warn_pct')::float8"
            ),
            connections_fail_pct: default!(
                Option<f64>,
                "@extschema@.runbook_setting('pg_runbook.connections_fail_pct')::float8"
            ),
            long_query_warn: default!(
                Option<Interval>,
                "@extschema@.runbook_setting('pg_runbook.long_query_warn')::interval"
            ),
            long_query_fail: default!(
                Option<Interval>,
                "@extschema@.runbook_setting('pg_runbook.long_query_fail')::interval"
            ),
            lock_wait_fail: default!(
                Option<Interval>,
                "@extschema@.runbook_setting('pg_runbook.lock_wait_fail')::interval"
            ),
            idle_in_transaction_warn: default!(
                Option<Interval>,
                "@extschema@.runbook_setting('pg_runbook.idle_in_transaction_warn')::interval"
            ),
            cache_hit_warn_pct: default!(
                Option<f64>,
                "@extschema@.runbook_setting('pg_runbook.cache_hit_warn_pct')::float8"
            ),
            cache_hit_fail_pct: default!(
                Option<f64>,
                "@extschema@.runbook_setting('pg_runbook.cache_hit_fail_pct')::float8"
            ),
            replication_lag_warn: default!(
                Option<Interval>,
                "@extschema@.runbook_setting('pg_runbook.replication_lag_warn')::interval"
            ),
            replication_lag_fail: default!(
                Option<Interval>,
                "@extschema@.runbook_setting('pg_runbook.replication_lag_fail')::interval"
            ),
            xid_age_warn: default!(
                Option<i64>,
                "@extschema@.runbook_setting('pg_runbook.xid_age_warn')::int8"
            ),
            xid_age_fail: default!(
                Option<i64>,
                "@extschema@.runbook_setting('pg_runbook.xid_age_fail')::int8"
            ),
            min_server_version: default!(
                Option<i32>,
                "@extschema@.runbook_setting('pg_runbook.min_server_version')::int4"
            ),
        ) -> TableIterator<
            'static,
            (
                name!(check, String),
                name!(status, String),
                name!(observed, String),
                name!(threshold, String),
                name!(detail, String),
            ),
        > {
            let $t = thresholds_from_args(
                connections_warn_pct,
                connections_fail_pct,
                long_query_warn,
                long_query_fail,
                lock_wait_fail,
                idle_in_transaction_warn,
                cache_hit_warn_pct,
                cache_hit_fail_pct,
                replication_lag_warn,
                replication_lag_fail,
                xid_age_warn,
                xid_age_fail,
                min_server_version,
            );
            $body
        }
    };
}

preflight_function! {
    /// Pre-deployment checks: one row per check with its status, what was observed, the threshold
    /// and details (the pids, queries or indexes involved).
    fn preflight_checks()(|t| into_output(all_checks(&t)))
}

preflight_function! {
    /// Like preflight_checks(), but raises (SQLSTATE P0004) listing every failing check, so a deploy
    /// script run with `psql -v ON_ERROR_STOP=1` stops there. With `allow_warn => false`, warnings
    /// fail it too.
    fn assert_preflight(allow_warn: default!(Option<bool>, "true"),)(|t| {
        let allow_warn = error::required("allow_warn", allow_warn);
        let rows = all_checks(&t);
        let failing: Vec<&CheckRow> = rows
            .iter()
            .filter(|r| r.status == Status::Fail || (!allow_warn && r.status == Status::Warn))
            .collect();
        if !failing.is_empty() {
            let names: Vec<String> = failing.iter().map(|r| r.check.to_string()).collect();
            let details: Vec<String> = failing
                .iter()
                .map(|r| {
                    format!(
                        "{} {}: observed {} ({}) {}",
                        r.check, r.status, r.observed, r.threshold, r.detail
                    )
                })
                .collect();
            error::assertion_failed("preflight", &names, &details);
        }
        into_output(rows)
    })
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn preflight_returns_every_named_check_once() {
        let checks: Vec<String> = Spi::connect(|c| {
            c.select(
                "SELECT \"check\" FROM preflight_checks() ORDER BY 1",
                None,
                &[],
            )
            .unwrap()
            .map(|r| r.get::<String>(1).unwrap().unwrap())
            .collect()
        });
        assert_eq!(
            checks,
            vec![
                "blocked_lock_waits",
                "cache_hit_ratio",
                "connections",
                "idle_in_transaction",
                "invalid_indexes",
                "long_running_queries",
                "pg_stat_statements",
                "replication_lag",
                "server_version",
                "xid_age",
            ]
        );
    }

    #[pg_test]
    fn a_lowered_connection_threshold_fails_the_connection_check() {
        let status = Spi::get_one::<String>(
            "SELECT status FROM preflight_checks(connections_warn_pct => 0, connections_fail_pct => 0) \
             WHERE \"check\" = 'connections'",
        );
        assert_eq!(status, Ok(Some("FAIL".to_string())));
    }

    #[pg_test(
        error = "invalid value for argument \"long_query_fail\": a negative interval is not a threshold"
    )]
    fn negative_threshold_is_refused_with_its_name() {
        Spi::run("SELECT * FROM preflight_checks(long_query_fail => '-1 minute')").unwrap();
    }

    #[pg_test(error = "argument \"xid_age_warn\" must not be NULL")]
    fn null_threshold_is_refused_with_its_name() {
        Spi::run("SELECT * FROM preflight_checks(xid_age_warn => NULL)").unwrap();
    }

    #[pg_test(error = "preflight failed: connections")]
    fn assert_preflight_raises_naming_the_failing_check() {
        Spi::run(
            "SELECT * FROM assert_preflight(connections_warn_pct => 0, connections_fail_pct => 0, \
                                            cache_hit_warn_pct => 0, cache_hit_fail_pct => 0)",
        )
        .unwrap();
    }
}
