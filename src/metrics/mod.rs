//! Request metrics: what the application records (`record_request(s)`, validated by ingest.rs),
//! the 5-minute rollups the worker folds them into (rollup.rs), the request sketch aggregates
//! behind the rollups' percentiles (sketch_agg.rs), SLOs and rollback triggers judged on the
//! rollups (slo.rs), and what monitoring reads (monitoring.rs).

pub mod ingest;
pub mod monitoring;
pub mod rollup;
pub mod sketch_agg;
pub mod slo;
