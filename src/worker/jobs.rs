//! The worker's periodic jobs, listed once in `JOBS`. A job written in Rust is called directly,
//! so a rename or a changed signature is a compile error; a job written in SQL is resolved by its
//! schema-qualified signature before each call, and a missing one is an error (logged and shown
//! in `worker_status()`), never a job silently switched off. A test checks that every job of the
//! list exists in the installed extension.

use crate::shmem::WorkerState;
use crate::{cache, matviews, metrics, own_sql};

/// How often a job runs.
#[derive(Copy, Clone, PartialEq, Eq)]
pub enum Interval {
    /// `pg_runbook.rollup_interval`.
    Rollup,
    /// `pg_runbook.maintenance_interval`.
    Maintenance,
}

/// How the worker calls a job.
#[derive(Copy, Clone)]
pub enum Call {
    /// A function of this library, called directly (it is also the SQL function `signature`).
    Rust(fn() -> i64),
    /// A function defined in the extension's SQL, called by its signature once it resolves.
    Sql,
}

#[derive(Copy, Clone)]
pub struct Job {
    /// The SQL signature, without the schema: what the worker reports and resolves.
    pub signature: &'static str,
    pub interval: Interval,
    pub call: Call,
}

impl Job {
    /// What `worker_status()` shows while the job runs.
    pub fn state(&self) -> WorkerState {
        match self.interval {
            Interval::Rollup => WorkerState::RollingUp,
            Interval::Maintenance => WorkerState::Maintenance,
        }
    }
}

/// Every periodic job, in the order they run.
pub const JOBS: [Job; 4] = [
    Job {
        signature: "rollup_metrics()",
        interval: Interval::Rollup,
        call: Call::Rust(metrics::rollup::rollup_metrics),
    },
    Job {
        signature: "notify_alert_changes()",
        interval: Interval::Rollup,
        call: Call::Sql,
    },
    Job {
        signature: "clean_expired_cache()",
        interval: Interval::Maintenance,
        call: Call::Rust(cache::store::clean_expired_cache),
    },
    Job {
        signature: "prune_mv_refresh_log()",
        interval: Interval::Maintenance,
        call: Call::Rust(matviews::checks::prune_mv_refresh_log),
    },
];

/// `signature` qualified with the extension's schema, checked to name an existing function;
/// an error naming it when it does not.
fn resolve(schema: &str, signature: &str) -> Result<String, String> {
    let function = format!("{schema}.{signature}");
    let found = own_sql::select_one(
        "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL",
        &[function.as_str().into()],
        |r| own_sql::col::<bool>(r, 1).unwrap_or(false),
    );
    if found {
        Ok(function)
    } else {
        Err(format!(
            "function {function} does not exist in the installed extension: the job cannot run"
        ))
    }
}

/// Runs `job` in the current transaction, under pg_runbook.lock_timeout. Nothing runs while the
/// extension is not created (the drain notices it and the worker leaves); an ERROR raised by the
/// job escapes to the caller, which runs each job in a transaction of its own.
pub fn run(job: &Job) -> Result<(), String> {
    let Some(schema) = own_sql::ext_schema_if_installed() else {
        return Ok(());
    };
    match job.call {
        Call::Rust(function) => {
            own_sql::with_lock_timeout(function);
        }
        Call::Sql => {
            let function = resolve(&schema, job.signature)?;
            own_sql::with_lock_timeout(|| own_sql::execute(&format!("SELECT {function}"), &[]));
        }
    }
    Ok(())
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn every_job_of_the_worker_resolves_in_the_installed_extension() {
        let schema = crate::own_sql::ext_schema();
        for job in super::JOBS {
            assert_eq!(
                super::resolve(&schema, job.signature),
                Ok(format!("{schema}.{}", job.signature)),
                "the worker's job {} is not a function of the extension",
                job.signature
            );
        }
    }

    #[pg_test]
    fn a_job_whose_function_is_missing_is_an_error_naming_it() {
        let schema = crate::own_sql::ext_schema();
        let missing = super::resolve(&schema, "rollup_metrics(integer)").unwrap_err();
        assert!(
            missing.contains("rollup_metrics(integer) does not exist"),
            "{missing}"
        );
    }
}
