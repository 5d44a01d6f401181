//! The launcher: one static worker, connected to no database (it reads the shared catalog
//! pg_database directly, as autovacuum's launcher does). Every tick it lists the databases to
//! serve (those named in `pg_runbook.database`, or every database that accepts connections when
//! that is empty), starts a dynamic per-database worker for each within `pg_runbook.max_workers`
//! and the free `max_worker_processes` slots, and says plainly, in the log once and in
//! `worker_status()`, which databases are unserved and why. A database whose worker found no
//! extension is looked at again every `EXTENSION_RECHECK`, so a later CREATE EXTENSION is picked
//! up without a restart; a database that does not exist, or whose worker died, is retried after
//! an exponential backoff capped by `pg_runbook.max_backoff`.

use super::{nap_until, reload_configuration, report_activity};
use crate::backend::{self, shutdown_requested};
use crate::settings;
use crate::shmem::{self, WorkerState};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker,
    SignalWakeFlags,
};
use pgrx::prelude::*;
use runbook_core::drain::backoff;
use std::collections::HashMap;
use std::ffi::CStr;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_secs(1);
const EXTENSION_RECHECK: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Registers the launcher; preloading only (static workers registered later are ignored).
pub fn register_launcher() {
    BackgroundWorkerBuilder::new("pg_runbook launcher")
        .set_type("pg_runbook launcher")
        .set_library("pg_runbook")
        .set_function("pg_runbook_launcher_main")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// The databases in pg_runbook.database, in order ('' = every database).
fn database_list() -> Vec<String> {
    settings::text(&settings::DATABASE)
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Databases that accept connections, from the shared catalog pg_database.
fn connectable_databases() -> Vec<(pg_sys::Oid, String)> {
    BackgroundWorker::transaction(|| {
        let mut out = Vec::new();
        // SAFETY: a catalog heap scan inside a transaction, as autovacuum's get_database_list
        // does; tuples are read before the scan ends and nothing is kept but owned copies.
        unsafe {
            let lockmode = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
            let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, lockmode);
            let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
            loop {
                let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
                if tuple.is_null() {
                    break;
                }
                let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
                if (*form).datallowconn && !(*form).datistemplate {
                    let name = CStr::from_ptr((*form).datname.data.as_ptr());
                    out.push(((*form).oid, name.to_string_lossy().into_owned()));
                }
            }
            pg_sys::table_endscan(scan);
            pg_sys::table_close(rel, lockmode);
        }
        out
    })
}

/// The launcher's memory of one database it was asked to serve.
struct Entry {
    database: pg_sys::Oid,
    handle: Option<DynamicBackgroundWorker>,
    /// Consecutive failures (missing database, worker died), for the backoff.
    attempts: u32,
    not_before: Instant,
    /// What was last logged about it, so each condition is said once, not every tick.
    said: String,
}

impl Entry {
    fn new() -> Self {
        Entry {
            database: pg_sys::InvalidOid,
            handle: None,
            attempts: 0,
            not_before: Instant::now(),
            said: String::new(),
        }
    }

    /// Logs `text` when it differs from what was last said.
    fn say(&mut self, text: String) {
        if self.said != text {
            log!("pg_runbook launcher: {text}");
            self.said = text;
        }
    }

    fn retry_later(&mut self) -> Duration {
        self.attempts += 1;
        let cap = Duration::from_millis(settings::MAX_BACKOFF_MS.get() as u64);
        let wait = backoff(self.attempts + 1, FIRST_RETRY, cap);
        self.not_before = Instant::now() + wait;
        wait
    }
}

/// Sets the managed slot of `name` (a database that has an oid, or a missing one that has none).
fn show(name: &str, database: pg_sys::Oid, state: WorkerState, reason: Option<&str>) -> bool {
    let at = backend::now_micros();
    let mut kept = false;
    shmem::write(|slots| {
        let index = slots
            .iter()
            .position(|s| {
                if database == pg_sys::InvalidOid {
                    s.managed && s.database == database && s.name() == name
                } else {
                    s.database == database
                }
            })
            .or_else(|| slots.iter().position(|s| s.is_free()));
        if let Some(i) = index {
            let s = &mut slots[i];
            if s.database != database || s.is_free() {
                s.claim(database, name);
            } else {
                s.set_name(name);
            }
            s.managed = true;
            if s.pid == 0 {
                s.state = state;
            }
            if let Some(r) = reason {
                s.set_error(r, at);
            }
            kept = true;
        }
    });
    kept
}

/// Slots of databases no longer asked for stop being shown (their counters stay while the
/// database exists); slots of dropped databases are freed for others.
fn forget_unlisted(wanted: &[String], existing: &[(pg_sys::Oid, String)]) {
    shmem::write(|slots| {
        for s in slots.iter_mut() {
            let dropped = s.database != pg_sys::InvalidOid
                && !existing.iter().any(|(oid, _)| *oid == s.database);
            if dropped && s.pid == 0 {
                s.claim(pg_sys::InvalidOid, "");
            }
        }
        for s in slots.iter_mut().filter(|s| s.managed) {
            if !wanted.contains(&s.name()) {
                s.managed = false;
                if s.database == pg_sys::InvalidOid {
                    s.claim(pg_sys::InvalidOid, "");
                }
            }
        }
    });
}

fn start_worker(database: pg_sys::Oid, name: &str) -> Option<DynamicBackgroundWorker> {
    let short: String = name.chars().take(40).collect();
    BackgroundWorkerBuilder::new(&format!("pg_runbook worker for {short}"))
        .set_type("pg_runbook worker")
        .set_library("pg_runbook")
        .set_function("pg_runbook_worker_main")
        .set_argument(database.into_datum())
        .enable_spi_access()
        .set_restart_time(None)
        .set_notify_pid(std::process::id() as i32)
        .load_dynamic()
        .ok()
}

struct Launcher {
    entries: HashMap<String, Entry>,
}

impl Launcher {
    fn tick(&mut self) {
        let found = connectable_databases();
        let listed = database_list();
        let wanted: Vec<(String, Option<pg_sys::Oid>)> = if listed.is_empty() {
            found
                .iter()
                .map(|(oid, n)| (n.clone(), Some(*oid)))
                .collect()
        } else {
            listed
                .iter()
                .map(|n| {
                    (
                        n.clone(),
                        found.iter().find(|(_, f)| f == n).map(|(o, _)| *o),
                    )
                })
                .collect()
        };
        let names: Vec<String> = wanted.iter().map(|(n, _)| n.clone()).collect();
        self.entries.retain(|name, e| {
            let keep = names.contains(name);
            if !keep && let Some(h) = e.handle.take() {
                h.terminate();
            }
            keep
        });
        forget_unlisted(&names, &found);
        let budget = settings::MAX_WORKERS.get().max(0) as usize;
        let mut running = 0usize;
        for (name, oid) in &wanted {
            let entry = self.entries.entry(name.clone()).or_insert_with(Entry::new);
            match oid {
                None => serve_missing(name, entry),
                Some(oid) => serve(name, *oid, entry, &mut running, budget),
            }
        }
        let text = format!("launcher: {running} of {} database(s) served", wanted.len());
        report_activity(pg_sys::BackendState::STATE_IDLE, &text);
    }
}

fn serve_missing(name: &str, entry: &mut Entry) {
    if Instant::now() < entry.not_before {
        return;
    }
    let wait = entry.retry_later();
    let text = format!(
        "database \"{name}\" listed in pg_runbook.database does not exist (attempt {}); looking again in {} s",
        entry.attempts,
        wait.as_secs_f64().round()
    );
    log!("pg_runbook launcher: {text}");
    entry.said = text.clone();
    show(
        name,
        pg_sys::InvalidOid,
        WorkerState::BackingOff,
        Some(&text),
    );
}

/// Keeps `name` served, or says why it is not.
fn serve(name: &str, oid: pg_sys::Oid, entry: &mut Entry, running: &mut usize, budget: usize) {
    if entry.database != oid {
        // New, or dropped and created again under the same name.
        if let Some(h) = entry.handle.take() {
            h.terminate();
        }
        *entry = Entry::new();
        entry.database = oid;
    }
    let slot = shmem::find(oid);
    let alive = match &entry.handle {
        Some(h) => matches!(h.pid(), Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted)),
        // A worker started by an earlier launcher (this one restarted) is adopted.
        None => slot.is_some_and(|s| s.pid != 0),
    };
    if alive {
        *running += 1;
        if slot.is_some_and(|s| s.state == WorkerState::Idle) {
            entry.attempts = 0;
        }
        return;
    }
    if entry.handle.take().is_some() {
        // It exited: for want of the extension (look again later) or after a failure.
        if slot.is_some_and(|s| s.state == WorkerState::WaitingForExtension) {
            entry.attempts = 0;
            entry.not_before = Instant::now() + EXTENSION_RECHECK;
        } else {
            let wait = entry.retry_later();
            let text = format!(
                "the worker for database \"{name}\" exited (attempt {}); starting it again in {} s",
                entry.attempts,
                wait.as_secs_f64().round()
            );
            log!("pg_runbook launcher: {text}");
            show(name, oid, WorkerState::BackingOff, Some(&text));
            return;
        }
    }
    if Instant::now() < entry.not_before {
        let state = slot.map(|s| s.state).unwrap_or(WorkerState::Starting);
        show(name, oid, state, None);
        return;
    }
    if !show(name, oid, WorkerState::Starting, None) {
        entry.say(format!(
            "database \"{name}\" unserved: shared memory has room for {} databases (pg_runbook.max_databases)",
            shmem::capacity()
        ));
        return;
    }
    if *running >= budget {
        let text = format!(
            "database \"{name}\" unserved: pg_runbook.max_workers ({budget}) workers already run"
        );
        entry.say(text.clone());
        show(name, oid, WorkerState::Unserved, Some(&text));
        return;
    }
    match start_worker(oid, name) {
        Some(h) => {
            entry.handle = Some(h);
            entry.said.clear();
            *running += 1;
        }
        None => {
            let text = format!(
                "database \"{name}\" unserved: no free background worker slot (max_worker_processes)"
            );
            entry.say(text.clone());
            show(name, oid, WorkerState::Unserved, Some(&text));
            entry.not_before = Instant::now() + FIRST_RETRY;
        }
    }
}

#[pg_guard]
// SAFETY: the name is unique in the process; the postmaster finds the worker's entry point by
// it (set_function), and nothing else defines it.
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_runbook_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    backend::die_on_sigterm();
    BackgroundWorker::connect_worker_to_spi(None, None);
    log!("pg_runbook launcher started");
    let mut launcher = Launcher {
        entries: HashMap::new(),
    };
    loop {
        if shutdown_requested() {
            break;
        }
        if BackgroundWorker::sighup_received() {
            reload_configuration();
        }
        launcher.tick();
        // A worker's exit (the postmaster signals the launcher, bgw_notify_pid) or SIGHUP sets
        // the latch and brings the next tick forward; backoffs are kept by each entry's
        // not_before, whatever wakes the launcher.
        if !nap_until(Instant::now() + TICK, true) {
            break;
        }
    }
}
