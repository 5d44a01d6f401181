//! pg_runbook's pure logic: values in, verdicts out, no PostgreSQL needed.
//!
//! The extension's SQL functions fetch rows and hand them here; `cargo test -p runbook-core` checks
//! the rules in seconds.

pub mod drain;
pub mod explain;
pub mod indexes;
pub mod integrity;
pub mod jsonb;
pub mod lint;
pub mod matviews;
pub mod names;
pub mod partitions;
pub mod rollup;
pub mod schema;
pub mod sketch;
pub mod slo;
pub mod status;
