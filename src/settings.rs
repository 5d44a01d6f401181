//! Every `pg_runbook.*` setting, in one place.
//!
//! Check thresholds are `USERSET`, so a session (or a deploy script) can tighten them with `SET`, and
//! each check function also takes them as named arguments whose defaults read these settings.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CStr;

// ---- the extension's own queries ------------------------------------------------------------

/// lock_timeout for every query the extension runs on its own: a check must never queue behind,
/// or make others queue behind, a migration's ACCESS EXCLUSIVE lock.
pub static LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(1_000);

// ---- pre-deployment checks -----------------------------------------------------------------

pub static CONNECTIONS_WARN_PCT: GucSetting<f64> = GucSetting::<f64>::new(80.0);
pub static CONNECTIONS_FAIL_PCT: GucSetting<f64> = GucSetting::<f64>::new(95.0);
pub static LONG_QUERY_WARN_MS: GucSetting<i32> = GucSetting::<i32>::new(60_000);
pub static LONG_QUERY_FAIL_MS: GucSetting<i32> = GucSetting::<i32>::new(300_000);
pub static LOCK_WAIT_FAIL_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);
pub static IDLE_IN_TRANSACTION_WARN_MS: GucSetting<i32> = GucSetting::<i32>::new(300_000);
pub static CACHE_HIT_WARN_PCT: GucSetting<f64> = GucSetting::<f64>::new(95.0);
pub static CACHE_HIT_FAIL_PCT: GucSetting<f64> = GucSetting::<f64>::new(90.0);
pub static REPLICATION_LAG_WARN_MS: GucSetting<i32> = GucSetting::<i32>::new(1_000);
pub static REPLICATION_LAG_FAIL_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);
pub static XID_AGE_WARN: GucSetting<i32> = GucSetting::<i32>::new(500_000_000);
pub static XID_AGE_FAIL: GucSetting<i32> = GucSetting::<i32>::new(1_500_000_000);
pub static MIN_SERVER_VERSION: GucSetting<i32> = GucSetting::<i32>::new(14);

// ---- health check -------------------------------------------------------------------------------

/// How long a health_check() result is served from the cache. Ten seconds keeps a load balancer
/// polling every second from doing catalog work more than once per ten seconds per cluster.
pub static HEALTH_CACHE_TTL_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

// ---- integrity, security, compliance --------------------------------------------------------

/// Sequence headroom: WARN / FAIL when a sequence has used this share of its range.
pub static SEQUENCE_WARN_PCT: GucSetting<f64> = GucSetting::<f64>::new(80.0);
pub static SEQUENCE_FAIL_PCT: GucSetting<f64> = GucSetting::<f64>::new(95.0);

/// Schemas an API layer exposes (PostgREST, Supabase): their tables should have row-level security.
pub static EXPOSED_SCHEMAS: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(Some(c"public"));

/// The audit table the compliance report counts changes in ('' = none), its time column ('' =
/// the table's time-typed partition key, else its first time-typed column) and its tenant column
/// ('' = the report's tenant is only a label).
pub static AUDIT_TABLE: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(Some(c""));
pub static AUDIT_TIME_COLUMN: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(Some(c""));
pub static AUDIT_TENANT_COLUMN: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(Some(c""));

/// A setting's text value, '' when unset.
pub fn text(setting: &GucSetting<Option<std::ffi::CString>>) -> String {
    setting
        .get()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn string(
    name: &'static CStr,
    about: &'static CStr,
    setting: &'static GucSetting<Option<std::ffi::CString>>,
) {
    GucRegistry::define_string_guc(
        name,
        about,
        c"",
        setting,
        GucContext::Userset,
        GucFlags::default(),
    );
}

// ---- metrics -------------------------------------------------------------------------------------

/// How long raw rows of performance_metrics are kept (seconds); rollup_metrics() prunes older
/// rows after folding them. Seven days covers a week of "compare with last deploy" questions
/// while the 5-minute rollups (a few KB per bucket) are kept.
pub static METRICS_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 86_400);

// ---- materialized views ---------------------------------------------------------------------

/// How long mv_refresh_log keeps rows, in seconds; 0 keeps them for ever. Thirty days covers a
/// month of deploys for "what did last week's refresh do".
pub static REFRESH_LOG_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(30 * 86_400);
// ---- query cache and background worker ----------------------------------------------------------

/// Databases the workers serve, comma-separated; empty: every database that accepts connections.
/// The launcher applies a change at the next reload.
pub static DATABASE: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(Some(c"postgres"));
pub static WORKER_ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
/// How long the worker sleeps when the queue is empty. One second: an enqueue wakes it at once,
/// so this only bounds how late the periodic jobs and a missed wake can be.
pub static NAPTIME_MS: GucSetting<i32> = GucSetting::<i32>::new(1_000);
/// Events per drain transaction: large enough that per-statement overhead vanishes, small enough
/// that a batch holds its row locks for milliseconds.
pub static DRAIN_BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1_000);
/// How often the worker runs rollup_metrics() (when that function exists).
pub static ROLLUP_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
/// How often the worker runs clean_expired_cache() and prune_mv_refresh_log().
pub static MAINTENANCE_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(300_000);
/// Whether an enqueue wakes the worker at commit (off: the worker sees events after a naptime).
pub static WAKE_ON_ENQUEUE: GucSetting<bool> = GucSetting::<bool>::new(true);

// ---- schema correctness (issue 15) ----------------------------------------------------------

/// An index is called unused only when the statistics cover at least this long: a week holds
/// the weekly jobs and reports that may be an index's only readers.
pub static UNUSED_INDEX_MIN_STATS_AGE_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 86_400);

// ---- migration lint and run_ddl (issue 19) -----------------------------------------------------

/// lint_migration: a statement whose cost grows with its table is WARN from this many estimated
/// rows and FAIL from `LINT_FAIL_ROWS`. 10,000 rows rewrite in milliseconds; at 500,000 a rewrite
/// or validation under ACCESS EXCLUSIVE stops the table for about a second or more on this
/// machine class, long enough for a connection pool to fill up behind it.
pub static LINT_WARN_ROWS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static LINT_FAIL_ROWS: GucSetting<i32> = GucSetting::<i32>::new(500_000);
/// lint_migration's lock-hold estimate: MB a scan reads per second (a rewrite counts as three).
pub static LINT_SCAN_RATE_MB: GucSetting<i32> = GucSetting::<i32>::new(200);
/// How long ddl_attempt_log keeps rows; run_ddl prunes older ones each time it writes. 0 keeps
/// them for ever.
pub static DDL_LOG_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(30 * 86_400);

// ---- parallel refresh (issue 17) ----------------------------------------------------------------

/// The most workers one refresh_analytics_views_concurrent() run may start, and its default
/// parallelism. Four leaves room in the default max_worker_processes (8) for the pg_runbook
/// worker, parallel query and replication; server-level, so a role cannot raise its own cap.
pub static REFRESH_MAX_PARALLEL: GucSetting<i32> = GucSetting::<i32>::new(4);

// ---- worker at scale (issue 16) ------------------------------------------------------------

/// Cache entries one drain batch may delete by tag: a tag with more entries is deleted chunk by
/// chunk, each chunk its own transaction in the worker and the drain procedure, so a migration's
/// ALTER TABLE on query_cache waits for one chunk at most (5000 entries: tens of milliseconds).
pub static DRAIN_MAX_ENTRIES: GucSetting<i32> = GucSetting::<i32>::new(5_000);
/// The bound of pg_runbook.refresh_max_parallel: the most workers one refresh run may have (the
/// run's shared segment is sized for it).
pub const REFRESH_PARALLEL_LIMIT: usize = 64;
/// Per-database workers the launcher may run at once (each takes a max_worker_processes slot).
pub static MAX_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(8);
/// Databases shared memory has room for (worker slots and cache counters); postmaster only.
pub static MAX_DATABASES: GucSetting<i32> = GucSetting::<i32>::new(64);
/// Longest wait between attempts to serve a database that failed (does not exist, worker died).
pub static MAX_BACKOFF_MS: GucSetting<i32> = GucSetting::<i32>::new(60_000);

const HOUR_MS: i32 = 3_600_000;
const DAY_MS: i32 = 24 * HOUR_MS;

fn ms(name: &'static CStr, about: &'static CStr, setting: &'static GucSetting<i32>, max: i32) {
    GucRegistry::define_int_guc(
        name,
        about,
        c"",
        setting,
        0,
        max,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
}

fn percent(name: &'static CStr, about: &'static CStr, setting: &'static GucSetting<f64>) {
    GucRegistry::define_float_guc(
        name,
        about,
        c"",
        setting,
        0.0,
        100.0,
        GucContext::Userset,
        GucFlags::default(),
    );
}

fn count(name: &'static CStr, about: &'static CStr, setting: &'static GucSetting<i32>) {
    GucRegistry::define_int_guc(
        name,
        about,
        c"",
        setting,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
}

/// Defines the settings. Called from `_PG_init`, preloaded or not: none of these is a
/// postmaster-only setting, which PostgreSQL refuses to define after startup.
pub fn init() {
    ms(
        c"pg_runbook.lock_timeout",
        c"lock_timeout for queries pg_runbook runs on its own.",
        &LOCK_TIMEOUT_MS,
        HOUR_MS,
    );

    percent(
        c"pg_runbook.connections_warn_pct",
        c"Preflight: WARN when client backends reach this percentage of max_connections.",
        &CONNECTIONS_WARN_PCT,
    );
    percent(
        c"pg_runbook.connections_fail_pct",
        c"Preflight: FAIL when client backends reach this percentage of max_connections.",
        &CONNECTIONS_FAIL_PCT,
    );
    ms(
        c"pg_runbook.long_query_warn",
        c"Preflight: WARN when a query has been active longer than this.",
        &LONG_QUERY_WARN_MS,
        DAY_MS,
    );
    ms(
        c"pg_runbook.long_query_fail",
        c"Preflight: FAIL when a query has been active longer than this.",
        &LONG_QUERY_FAIL_MS,
        DAY_MS,
    );
    ms(
        c"pg_runbook.lock_wait_fail",
        c"Preflight: FAIL when a session has waited on a lock longer than this.",
        &LOCK_WAIT_FAIL_MS,
        DAY_MS,
    );
    ms(
        c"pg_runbook.idle_in_transaction_warn",
        c"Preflight: WARN when a session has been idle in transaction longer than this.",
        &IDLE_IN_TRANSACTION_WARN_MS,
        DAY_MS,
    );
    percent(
        c"pg_runbook.cache_hit_warn_pct",
        c"Preflight: WARN when the database's buffer cache hit ratio is below this percentage.",
        &CACHE_HIT_WARN_PCT,
    );
    percent(
        c"pg_runbook.cache_hit_fail_pct",
        c"Preflight: FAIL when the database's buffer cache hit ratio is below this percentage.",
        &CACHE_HIT_FAIL_PCT,
    );
    ms(
        c"pg_runbook.replication_lag_warn",
        c"Preflight: WARN when a standby's replay lag exceeds this.",
        &REPLICATION_LAG_WARN_MS,
        DAY_MS,
    );
    ms(
        c"pg_runbook.replication_lag_fail",
        c"Preflight: FAIL when a standby's replay lag exceeds this.",
        &REPLICATION_LAG_FAIL_MS,
        DAY_MS,
    );
    count(
        c"pg_runbook.xid_age_warn",
        c"Preflight: WARN when the oldest database's transaction ID age exceeds this.",
        &XID_AGE_WARN,
    );
    count(
        c"pg_runbook.xid_age_fail",
        c"Preflight: FAIL when the oldest database's transaction ID age exceeds this.",
        &XID_AGE_FAIL,
    );
    count(
        c"pg_runbook.min_server_version",
        c"Preflight: WARN when the server's major version is below this.",
        &MIN_SERVER_VERSION,
    );

    ms(
        c"pg_runbook.health_cache_ttl",
        c"How long health_check() serves a cached result; 0 disables the cache.",
        &HEALTH_CACHE_TTL_MS,
        HOUR_MS,
    );

    percent(
        c"pg_runbook.sequence_warn_pct",
        c"Integrity: WARN when a sequence has used this percentage of its range.",
        &SEQUENCE_WARN_PCT,
    );
    percent(
        c"pg_runbook.sequence_fail_pct",
        c"Integrity: FAIL when a sequence has used this percentage of its range.",
        &SEQUENCE_FAIL_PCT,
    );
    string(c"pg_runbook.exposed_schemas", c"Security: comma-separated schemas exposed to an API, whose tables need row-level security.", &EXPOSED_SCHEMAS);
    string(
        c"pg_runbook.audit_table",
        c"Compliance: the audit table whose changes the compliance report counts ('' for none).",
        &AUDIT_TABLE,
    );
    string(c"pg_runbook.audit_time_column", c"Compliance: the audit table's time column ('' to use its time-typed partition key or first time column).", &AUDIT_TIME_COLUMN);
    string(c"pg_runbook.audit_tenant_column", c"Compliance: the audit table's tenant column; with it, a report for a tenant counts only its rows.", &AUDIT_TENANT_COLUMN);
    GucRegistry::define_int_guc(
        c"pg_runbook.metrics_retention",
        c"Metrics: raw performance_metrics rows older than this are pruned by rollup_metrics(), after being rolled up.",
        c"",
        &METRICS_RETENTION_S,
        300,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_runbook.refresh_log_retention",
        c"How long mv_refresh_log keeps rows; 0 keeps them for ever.",
        c"",
        &REFRESH_LOG_RETENTION_S,
        0,
        i32::MAX,
        // Retention deletes rows every role relies on: only a superuser (or the server's
        // configuration) decides it, never a role's own SET or ALTER ROLE ... SET.
        GucContext::Suset,
        GucFlags::UNIT_S,
    );

    count(
        c"pg_runbook.lint_warn_rows",
        c"Migration lint: WARN when a statement rewrites or scans a table of at least this many estimated rows.",
        &LINT_WARN_ROWS,
    );
    count(
        c"pg_runbook.lint_fail_rows",
        c"Migration lint: FAIL when a statement rewrites or scans a table of at least this many estimated rows.",
        &LINT_FAIL_ROWS,
    );
    GucRegistry::define_int_guc(
        c"pg_runbook.lint_scan_rate",
        c"Migration lint: MB per second a table scan reads, for the lock-hold estimate.",
        c"",
        &LINT_SCAN_RATE_MB,
        1,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_runbook.ddl_log_retention",
        c"How long ddl_attempt_log keeps rows; run_ddl prunes older ones. 0 keeps them for ever.",
        c"",
        &DDL_LOG_RETENTION_S,
        0,
        i32::MAX,
        // Suset: run_ddl prunes as the extension's owner, so a caller who could shorten the
        // retention could erase other roles' attempts.
        GucContext::Suset,
        GucFlags::UNIT_S,
    );

    worker_settings();
    // ---- schema correctness (issue 15) ----
    GucRegistry::define_int_guc(
        c"pg_runbook.unused_index_min_stats_age",
        c"Indexes: statistics younger than this (since stats_reset) make an unscanned index's use unknown, not unused.",
        c"",
        &UNUSED_INDEX_MIN_STATS_AGE_S,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );

    // parallel refresh (issue 17)
    GucRegistry::define_int_guc(
        c"pg_runbook.refresh_max_parallel",
        c"Most background workers one refresh_analytics_views_concurrent() run may use (its default parallelism too).",
        c"",
        &REFRESH_MAX_PARALLEL,
        1,
        REFRESH_PARALLEL_LIMIT as i32,
        GucContext::Sighup,
        GucFlags::default(),
    );

    worker_scale_settings();
    reserve_prefix();
}

fn worker_setting_ms(
    name: &'static CStr,
    about: &'static CStr,
    setting: &'static GucSetting<i32>,
    min: i32,
) {
    GucRegistry::define_int_guc(
        name,
        about,
        c"",
        setting,
        min,
        DAY_MS,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
}

fn worker_settings() {
    GucRegistry::define_string_guc(
        c"pg_runbook.database",
        c"Databases the pg_runbook workers serve, comma-separated (one worker each); empty: all.",
        c"The launcher applies a change at the next reload, within pg_runbook.max_workers.",
        &DATABASE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_runbook.worker_enabled",
        c"Whether the pg_runbook worker does any work.",
        c"",
        &WORKER_ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    worker_setting_ms(
        c"pg_runbook.naptime",
        c"How long the pg_runbook worker sleeps between rounds when not woken.",
        &NAPTIME_MS,
        10,
    );
    GucRegistry::define_int_guc(
        c"pg_runbook.drain_batch_size",
        c"Invalidation events the worker drains per transaction.",
        c"",
        &DRAIN_BATCH_SIZE,
        1,
        100_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    worker_setting_ms(
        c"pg_runbook.rollup_interval",
        c"How often the worker runs rollup_metrics().",
        &ROLLUP_INTERVAL_MS,
        100,
    );
    worker_setting_ms(
        c"pg_runbook.maintenance_interval",
        c"How often the worker runs clean_expired_cache() and prune_mv_refresh_log().",
        &MAINTENANCE_INTERVAL_MS,
        100,
    );
    GucRegistry::define_bool_guc(
        c"pg_runbook.wake_on_enqueue",
        c"Whether enqueueing a cache invalidation wakes the worker at commit.",
        c"",
        &WAKE_ON_ENQUEUE,
        GucContext::Userset,
        GucFlags::default(),
    );
}

thread_local! {
    /// This backend's pg_runbook settings, found once: the GUC machinery never moves a defined
    /// setting's record, so the pointers stay valid for the life of the backend.
    static OWN_SETTINGS: std::cell::OnceCell<Vec<*const pgrx::pg_sys::config_generic>> =
        const { std::cell::OnceCell::new() };
}

/// The first `pg_runbook.*` setting whose value in this session does not come from the server
/// (configuration file, command line, ALTER SYSTEM) or the database (ALTER DATABASE ... SET):
/// one set with SET, ALTER ROLE ... SET, or the client's options. `None` when there is none.
/// Shared results (the health cache) are computed only with server-level settings.
pub fn overridden_in_session() -> Option<String> {
    use pgrx::pg_sys;
    OWN_SETTINGS.with(|own| {
        let own = own.get_or_init(|| {
            // SAFETY: get_guc_variables returns the array of GetNumConfigOptions() setting
            // records of this backend; their names are NUL-terminated strings.
            unsafe {
                let all = pg_sys::get_guc_variables();
                (0..pg_sys::GetNumConfigOptions() as usize)
                    .map(|i| *all.add(i) as *const pg_sys::config_generic)
                    .filter(|g| {
                        std::ffi::CStr::from_ptr((**g).name)
                            .to_bytes()
                            .starts_with(b"pg_runbook.")
                    })
                    .collect()
            }
        });
        own.iter().find_map(|g| {
            // SAFETY: the records live as long as the backend (see OWN_SETTINGS) and their names are
            // NUL-terminated; only `source` and `name` are read.
            unsafe {
                ((**g).source > pg_sys::GucSource::PGC_S_DATABASE).then(|| {
                    std::ffi::CStr::from_ptr((**g).name)
                        .to_string_lossy()
                        .into_owned()
                })
            }
        })
    })
}

/// After this, a typo such as `SET pg_runbook.lock_timout` is an error instead of a silent
/// placeholder. Must run after every setting is defined.
fn reserve_prefix() {
    // SAFETY: the prefix is a static C string; called from _PG_init, as PostgreSQL expects.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"pg_runbook".as_ptr()) };
}

/// Settings of the launcher and the chunked drain (issue 16).
fn worker_scale_settings() {
    GucRegistry::define_int_guc(
        c"pg_runbook.drain_max_entries",
        c"Cache entries one drain batch deletes by tag at most; a larger tag takes several batches.",
        c"",
        &DRAIN_MAX_ENTRIES,
        100,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_runbook.max_workers",
        c"Per-database pg_runbook workers the launcher runs at once.",
        c"Databases beyond it are reported as unserved in worker_status() and the log.",
        &MAX_WORKERS,
        0,
        1_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    worker_setting_ms(
        c"pg_runbook.max_backoff",
        c"Longest wait between attempts to serve a database that failed.",
        &MAX_BACKOFF_MS,
        100,
    );
    // Shared memory is sized once, at server start: defining a postmaster-only setting after
    // startup is FATAL, so only the preloading call defines it.
    if crate::backend::preloading() {
        GucRegistry::define_int_guc(
            c"pg_runbook.max_databases",
            c"Databases pg_runbook's shared memory has room for (worker state and cache counters).",
            c"Takes effect at server start.",
            &MAX_DATABASES,
            1,
            10_000,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
}
