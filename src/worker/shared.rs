//! Shared memory of the workers: one slot per database, sized by `pg_runbook.max_databases` at
//! server start. A slot holds what `worker_status()` shows (the launcher's verdict, the worker's
//! state and pid) and the database's cache counters. A full table is said, never papered over by
//! reusing another database's slot.

use crate::settings;
use pgrx::prelude::*;
use std::ffi::CStr;

pub const NAME_LEN: usize = 64;
pub const ERROR_LEN: usize = 256;
const TRANCHE: &CStr = c"pg_runbook_databases";

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum State {
    Starting,
    WaitingForExtension,
    Idle,
    Draining,
    RollingUp,
    Maintenance,
    BackingOff,
    Unserved,
    Disabled,
    Standby,
    Stopped,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::WaitingForExtension => "waiting for CREATE EXTENSION",
            State::Idle => "idle",
            State::Draining => "draining",
            State::RollingUp => "rolling up",
            State::Maintenance => "cleaning up",
            State::BackingOff => "backing off",
            State::Unserved => "unserved",
            State::Disabled => "disabled",
            State::Standby => "standby (idle until promotion)",
            State::Stopped => "stopped",
        }
    }
}

/// One database: the launcher's and the worker's view of it, and its cache counters.
#[derive(Copy, Clone)]
#[repr(C)]
pub struct Slot {
    /// The launcher manages this slot (it is shown by worker_status()).
    pub managed: bool,
    pub database: pg_sys::Oid,
    pub name: [u8; NAME_LEN],
    pub name_len: usize,
    pub pid: i32,
    pub procno: i32,
    pub state: State,
    pub last_drain_at: i64,
    pub worker_drained: u64,
    pub error: [u8; ERROR_LEN],
    pub error_len: usize,
    pub last_error_at: i64,
    pub naptime_ms: i32,
    pub hits: u64,
    pub misses: u64,
    pub drained: u64,
}

impl Slot {
    const EMPTY: Slot = Slot {
        managed: false,
        database: pg_sys::InvalidOid,
        name: [0; NAME_LEN],
        name_len: 0,
        pid: 0,
        procno: -1,
        state: State::Starting,
        last_drain_at: 0,
        worker_drained: 0,
        error: [0; ERROR_LEN],
        error_len: 0,
        last_error_at: 0,
        naptime_ms: 0,
        hits: 0,
        misses: 0,
        drained: 0,
    };

    pub fn is_free(&self) -> bool {
        !self.managed && self.database == pg_sys::InvalidOid
    }

    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.name[..self.name_len]).into_owned()
    }

    pub fn set_name(&mut self, name: &str) {
        self.name_len = copy_into(&mut self.name, name);
    }

    pub fn error(&self) -> Option<String> {
        (self.error_len > 0)
            .then(|| String::from_utf8_lossy(&self.error[..self.error_len]).into_owned())
    }

    pub fn set_error(&mut self, text: &str, at: i64) {
        self.error_len = copy_into(&mut self.error, text);
        self.last_error_at = at;
    }

    /// Makes a free slot this database's.
    pub fn claim(&mut self, database: pg_sys::Oid, name: &str) {
        *self = Slot::EMPTY;
        self.database = database;
        self.set_name(name);
    }
}

fn copy_into(buf: &mut [u8], text: &str) -> usize {
    let mut n = text.len().min(buf.len());
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    buf[..n].copy_from_slice(&text.as_bytes()[..n]);
    n
}

// Set in the postmaster by the startup hook (and again after a crash restart), inherited by
// every process it forks; null when the library was not preloaded.
static mut SLOTS: *mut Slot = std::ptr::null_mut();
static mut CAPACITY: usize = 0;
static mut LOCK: *mut pg_sys::LWLock = std::ptr::null_mut();
static mut PREV_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP: pg_sys::shmem_startup_hook_type = None;

fn capacity_setting() -> usize {
    settings::MAX_DATABASES.get().max(1) as usize
}

/// Installs the shared-memory hooks; preloading only.
pub fn init() {
    // SAFETY: _PG_init runs once in the postmaster before any hook is called.
    unsafe {
        PREV_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(on_request);
        PREV_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(on_startup);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_request() {
    // SAFETY: called by the postmaster in shmem_request_hook, where these requests belong.
    unsafe {
        if let Some(prev) = PREV_REQUEST {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(capacity_setting() * std::mem::size_of::<Slot>());
        pg_sys::RequestNamedLWLockTranche(TRANCHE.as_ptr(), 1);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_startup() {
    // SAFETY: AddinShmemInitLock (MainLWLockArray[21] in PG 15) serialises ShmemInitStruct;
    // the space was requested in on_request with the same capacity.
    unsafe {
        if let Some(prev) = PREV_STARTUP {
            prev();
        }
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let capacity = capacity_setting();
        let mut found = false;
        let slots = pg_sys::ShmemInitStruct(
            c"pg_runbook databases".as_ptr(),
            capacity * std::mem::size_of::<Slot>(),
            &mut found,
        ) as *mut Slot;
        if !found {
            for i in 0..capacity {
                slots.add(i).write(Slot::EMPTY);
            }
        }
        SLOTS = slots;
        CAPACITY = capacity;
        LOCK = &raw mut (*pg_sys::GetNamedLWLockTranche(TRANCHE.as_ptr())).lock;
        pg_sys::LWLockRelease(init_lock);
    }
}

/// Whether shared memory exists (the library was preloaded).
pub fn ready() -> bool {
    // SAFETY: written only by the postmaster before forking.
    unsafe { !SLOTS.is_null() }
}

pub fn capacity() -> usize {
    // SAFETY: as above.
    unsafe { CAPACITY }
}

fn with(mode: pg_sys::LWLockMode::Type, f: impl FnOnce(&mut [Slot])) {
    if !ready() {
        return;
    }
    // SAFETY: the slots live for the life of shared memory; the LWLock serialises writers, and
    // `f` only copies plain data (no ERROR can leave the lock held: LWLocks are released at
    // abort anyway).
    unsafe {
        pg_sys::LWLockAcquire(LOCK, mode);
        f(std::slice::from_raw_parts_mut(SLOTS, CAPACITY));
        pg_sys::LWLockRelease(LOCK);
    }
}

/// Runs `f` on every slot under the exclusive lock.
pub fn write(f: impl FnOnce(&mut [Slot])) {
    with(pg_sys::LWLockMode::LW_EXCLUSIVE, f);
}

/// A copy of every slot, read under the shared lock.
pub fn snapshot() -> Vec<Slot> {
    let mut out = Vec::new();
    with(pg_sys::LWLockMode::LW_SHARED, |slots| out = slots.to_vec());
    out
}

/// A copy of the slot of `database`, if it has one (without copying the others: every enqueue's
/// commit looks its worker up).
pub fn find(database: pg_sys::Oid) -> Option<Slot> {
    let mut out = None;
    with(pg_sys::LWLockMode::LW_SHARED, |slots| {
        out = slots.iter().find(|s| s.database == database).copied()
    });
    out
}

/// Runs `f` on the slot at `index`.
pub fn update(index: usize, f: impl FnOnce(&mut Slot)) {
    write(|slots| {
        if let Some(slot) = slots.get_mut(index) {
            f(slot)
        }
    });
}

/// Runs `f` on this database's slot, claiming a free one when it has none; false when the
/// table is full (the caller says so).
pub fn with_database(database: pg_sys::Oid, f: impl FnOnce(&mut Slot)) -> bool {
    let mut found = false;
    write(|slots| {
        let index = slots
            .iter()
            .position(|s| s.database == database)
            .or_else(|| slots.iter().position(Slot::is_free));
        if let Some(i) = index {
            if slots[i].database != database {
                slots[i].claim(database, "");
            }
            f(&mut slots[i]);
            found = true;
        }
    });
    found
}

pub use crate::backend::now_micros;
