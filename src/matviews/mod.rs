//! Materialized views: `verify_materialized_view_indexes()`, the refresh functions (staggered:
//! one view after another; parallel: independent views at the same time, within a time budget),
//! their log and `refresh_status()`. It offers the other capabilities nothing but its SQL
//! functions and `checks::prune_mv_refresh_log`, which the background worker runs.
//!
//! The files, each depending only on those listed before it:
//! - views.rs: the views as the catalog describes them, the argument filters, their
//!   dependencies and the refresh plan (the order and the skip rule are runbook-core's `matviews`);
//! - refresh.rs: a run, the caller's side: the shared segment, starting the workers, relaying
//!   their progress; the one path of both refresh functions;
//! - log.rs: the workers' transactions and bookkeeping (log rows, source snapshots), and the
//!   folder's SQL (sql/matviews.sql);
//! - worker.rs: a refresh worker, one transaction per view;
//! - checks.rs: the read-only functions and the log's retention;
//! - staggered.rs: the sequential refresh functions and the validation of the refresh arguments;
//! - parallel.rs: the parallel refresh and its budget verdict.

pub mod checks;
pub mod log;
pub mod parallel;
pub mod refresh;
pub mod staggered;
pub mod views;
pub mod worker;
