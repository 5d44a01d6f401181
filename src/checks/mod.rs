//! Checks: the runbook steps that look at the server and answer PASS, WARN or FAIL.
//!
//! Owns `preflight_checks()` and its `assert_*` twins, the cached `health_check()`, the integrity,
//! security, partition and compliance reports, `check_query_plan()`, and the accepted findings
//! that every object-level check honours. Each check is one module; the row they share is
//! `findings::Finding`.

pub mod compliance;
pub mod findings;
pub mod health;
pub mod integrity;
pub mod partitions;
pub mod preflight;
pub mod query_plan;
pub mod security;
