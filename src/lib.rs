//! pg_runbook: deploy-day runbook steps as SQL functions.
//!
//! This file is the table of contents: one module per capability, and `_PG_init`, which defines the
//! settings and, when the library is preloaded, the shared memory and the background worker.

use pgrx::prelude::*;

mod backend;
mod cache;
mod checks;
mod error;
mod jsonb_datum;
mod lint;
mod matviews;
mod metrics;
mod own_sql;
mod policy;
mod privileges;
mod schema;
mod settings;
mod shmem;
mod worker;

pgrx::pg_module_magic!();

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::init();
    if backend::preloading() {
        shmem::init();
        worker::register_launcher();
    }
}

/// Hooks for `cargo pgrx test`: the test cluster preloads the library, so shared memory and the
/// background worker are exercised by the in-crate tests too.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_runbook'"]
    }
}
