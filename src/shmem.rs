//! Every piece of the extension's shared memory, and the only code that touches it. Capabilities
//! use what it offers and never each other's internals:
//!
//! - one slot per database (sized by `pg_runbook.max_databases` at server start): what
//!   `worker_status()` shows, written by the launcher and the database's worker;
//! - each database's cache counters (hits, misses, drained events), kept as atomics beside the
//!   slots, so a cache lookup counts without taking a lock;
//! - each worker's latch (its PGPROC number, published in its slot) and `wake`, which an enqueue's
//!   commit calls;
//! - the health check's shared result, one per database (`load_health`, `store_health`).
//!
//! `init()` is called once from `_PG_init` while the library is preloaded. Without preloading
//! there is no shared memory: `ready()` is false, the slots read as empty, the counters are
//! this backend's own, and the health check keeps a per-backend copy.

use crate::settings;
use pgrx::lwlock::PgLwLock;
use pgrx::pg_shmem_init;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::cell::Cell;
use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Requests every piece of shared memory; called from `_PG_init` when preloading, once.
pub fn init() {
    // SAFETY: _PG_init runs once in the postmaster before any hook is called; each hook calls the
    // one installed before it.
    unsafe {
        PREV_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(on_request);
        PREV_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(on_startup);
    }
    pg_shmem_init!(HEALTH);
}

/// Whether shared memory exists (the library was preloaded).
pub fn ready() -> bool {
    !SLOTS.load(Ordering::Relaxed).is_null()
}

// ---- the per-database slots -----------------------------------------------------------------

pub const NAME_LEN: usize = 64;
pub const ERROR_LEN: usize = 256;
const TRANCHE: &CStr = c"pg_runbook_databases";

/// What a database's worker is doing, as `worker_status()` shows it.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum WorkerState {
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

impl WorkerState {
    pub fn name(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::WaitingForExtension => "waiting for CREATE EXTENSION",
            WorkerState::Idle => "idle",
            WorkerState::Draining => "draining",
            WorkerState::RollingUp => "rolling up",
            WorkerState::Maintenance => "cleaning up",
            WorkerState::BackingOff => "backing off",
            WorkerState::Unserved => "unserved",
            WorkerState::Disabled => "disabled",
            WorkerState::Standby => "standby (idle until promotion)",
            WorkerState::Stopped => "stopped",
        }
    }
}

/// One database: the launcher's and the worker's view of it. Its cache counters are the
/// `CounterCell` at the same index.
#[derive(Copy, Clone)]
#[repr(C)]
pub struct Slot {
    /// The launcher manages this slot (it is shown by worker_status()).
    pub managed: bool,
    pub database: pg_sys::Oid,
    pub name: [u8; NAME_LEN],
    pub name_len: usize,
    pub pid: i32,
    /// The worker's PGPROC number, whose latch `wake` sets; -1 when no worker runs.
    pub procno: i32,
    pub state: WorkerState,
    pub last_drain_at: i64,
    pub worker_drained: u64,
    pub error: [u8; ERROR_LEN],
    pub error_len: usize,
    pub last_error_at: i64,
    pub naptime_ms: i32,
}

impl Slot {
    const EMPTY: Slot = Slot {
        managed: false,
        database: pg_sys::InvalidOid,
        name: [0; NAME_LEN],
        name_len: 0,
        pid: 0,
        procno: -1,
        state: WorkerState::Starting,
        last_drain_at: 0,
        worker_drained: 0,
        error: [0; ERROR_LEN],
        error_len: 0,
        last_error_at: 0,
        naptime_ms: 0,
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

    /// Makes a slot this database's, starting afresh (its cache counters too).
    pub fn claim(&mut self, database: pg_sys::Oid, name: &str) {
        *self = Slot::EMPTY;
        self.database = database;
        self.set_name(name);
    }
}

/// A time kept in a slot (PostgreSQL microseconds), or None for 0, which means never.
pub fn slot_time(micros: i64) -> Option<TimestampWithTimeZone> {
    (micros != 0)
        .then(|| TimestampWithTimeZone::try_from(micros).ok())
        .flatten()
}

fn copy_into(buf: &mut [u8], text: &str) -> usize {
    let mut n = text.len().min(buf.len());
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    buf[..n].copy_from_slice(&text.as_bytes()[..n]);
    n
}

/// A database's cache counters since its slot was claimed, updated without a lock. `database`
/// repeats the slot's (set under the exclusive lock whenever the slot changes hands), so that a
/// backend can check without the lock that the index it remembered is still its database's.
#[repr(C)]
struct CounterCell {
    database: AtomicU32,
    hits: AtomicU64,
    misses: AtomicU64,
    drained: AtomicU64,
}

impl CounterCell {
    fn reset(&self, database: pg_sys::Oid) {
        self.hits.store(0, Ordering::Relaxed);
        self.misses.store(0, Ordering::Relaxed);
        self.drained.store(0, Ordering::Relaxed);
        self.database.store(database.to_u32(), Ordering::Release);
    }
}

// Set in the postmaster by the startup hook (and again after a crash restart), inherited by
// every process it forks; null when the library was not preloaded.
static SLOTS: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());
static COUNTERS: AtomicPtr<CounterCell> = AtomicPtr::new(std::ptr::null_mut());
static CAPACITY: AtomicUsize = AtomicUsize::new(0);
static LOCK: AtomicPtr<pg_sys::LWLock> = AtomicPtr::new(std::ptr::null_mut());
static mut PREV_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP: pg_sys::shmem_startup_hook_type = None;

fn capacity_setting() -> usize {
    settings::MAX_DATABASES.get().max(1) as usize
}

/// The bytes of the slots and, after them, the counters.
fn region_size(capacity: usize) -> usize {
    capacity * (std::mem::size_of::<Slot>() + std::mem::size_of::<CounterCell>())
}

#[pg_guard]
extern "C-unwind" fn on_request() {
    // SAFETY: called by the postmaster in shmem_request_hook, where these requests belong.
    unsafe {
        if let Some(prev) = PREV_REQUEST {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(region_size(capacity_setting()));
        pg_sys::RequestNamedLWLockTranche(TRANCHE.as_ptr(), 1);
    }
}

#[pg_guard]
extern "C-unwind" fn on_startup() {
    // SAFETY: AddinShmemInitLock (MainLWLockArray[21] in PG 15) serialises ShmemInitStruct; the
    // space was requested in on_request with the same capacity. The counters start right after
    // the slots, whose size is a multiple of 8 (repr(C) with u64 members), so they are aligned.
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
            region_size(capacity),
            &mut found,
        ) as *mut Slot;
        let counters = slots.add(capacity) as *mut CounterCell;
        if !found {
            for i in 0..capacity {
                slots.add(i).write(Slot::EMPTY);
                counters.add(i).write(CounterCell {
                    database: AtomicU32::new(pg_sys::InvalidOid.to_u32()),
                    hits: AtomicU64::new(0),
                    misses: AtomicU64::new(0),
                    drained: AtomicU64::new(0),
                });
            }
        }
        let lock = &raw mut (*pg_sys::GetNamedLWLockTranche(TRANCHE.as_ptr())).lock;
        CAPACITY.store(capacity, Ordering::Relaxed);
        COUNTERS.store(counters, Ordering::Relaxed);
        LOCK.store(lock, Ordering::Relaxed);
        SLOTS.store(slots, Ordering::Release);
        pg_sys::LWLockRelease(init_lock);
    }
}

/// How many databases the slots have room for.
pub fn capacity() -> usize {
    CAPACITY.load(Ordering::Relaxed)
}

fn counter_cells() -> &'static [CounterCell] {
    if !ready() {
        return &[];
    }
    // SAFETY: the cells live as long as shared memory and are only touched through atomics.
    unsafe { std::slice::from_raw_parts(COUNTERS.load(Ordering::Relaxed), capacity()) }
}

fn with(mode: pg_sys::LWLockMode::Type, f: impl FnOnce(&mut [Slot])) {
    if !ready() {
        return;
    }
    // SAFETY: the slots live for the life of shared memory; the LWLock serialises writers, and
    // `f` only copies plain data (no ERROR can leave the lock held: LWLocks are released at
    // abort anyway).
    unsafe {
        let lock = LOCK.load(Ordering::Relaxed);
        pg_sys::LWLockAcquire(lock, mode);
        let slots = std::slice::from_raw_parts_mut(SLOTS.load(Ordering::Relaxed), capacity());
        f(slots);
        if mode == pg_sys::LWLockMode::LW_EXCLUSIVE {
            // A slot that changed hands starts with fresh counters, tagged with its database.
            for (slot, cell) in slots.iter().zip(counter_cells()) {
                if cell.database.load(Ordering::Relaxed) != slot.database.to_u32() {
                    cell.reset(slot.database);
                }
            }
        }
        pg_sys::LWLockRelease(lock);
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

/// The index of this database's slot, claiming a free one when it has none; None when the
/// table is full.
fn slot_of(database: pg_sys::Oid) -> Option<usize> {
    let mut index = None;
    write(|slots| {
        index = slots
            .iter()
            .position(|s| s.database == database)
            .or_else(|| slots.iter().position(Slot::is_free));
        if let Some(i) = index
            && slots[i].database != database
        {
            slots[i].claim(database, "");
        }
    });
    index
}

// ---- the cache counters ---------------------------------------------------------------------

/// A database's cache counters: since the server started (shared memory), or since this backend
/// started (without preloading).
#[derive(Copy, Clone, Default)]
pub struct CacheCounters {
    pub hits: u64,
    pub misses: u64,
    pub drained: u64,
}

thread_local! {
    /// Without shared_preload_libraries: this backend's own counters.
    static BACKEND_COUNTERS: Cell<CacheCounters> = Cell::new(CacheCounters::default());
    /// The index of this database's counters, remembered after the first lookup.
    static COUNTER_INDEX: Cell<Option<usize>> = const { Cell::new(None) };
    static FULL_WARNED: Cell<bool> = const { Cell::new(false) };
}

/// This database's counter cell, claiming a slot on first use; None (said once) when the slots
/// are full.
fn my_counters() -> Option<&'static CounterCell> {
    let database = crate::backend::database();
    let cells = counter_cells();
    let remembered = COUNTER_INDEX.with(Cell::get).and_then(|i| cells.get(i));
    if let Some(cell) = remembered
        && cell.database.load(Ordering::Acquire) == database.to_u32()
    {
        return Some(cell);
    }
    match slot_of(database) {
        Some(i) => {
            COUNTER_INDEX.with(|c| c.set(Some(i)));
            cells.get(i)
        }
        None => {
            if !FULL_WARNED.with(|w| w.replace(true)) {
                pgrx::warning!(
                    "pg_runbook: shared memory has room for {} databases (pg_runbook.max_databases), all taken: this database's cache counters are not kept",
                    capacity()
                );
            }
            None
        }
    }
}

fn add(counter: impl Fn(&CounterCell) -> &AtomicU64, local: impl Fn(&mut CacheCounters), n: u64) {
    if !ready() {
        BACKEND_COUNTERS.with(|c| {
            let mut v = c.get();
            local(&mut v);
            c.set(v);
        });
    } else if let Some(cell) = my_counters() {
        counter(cell).fetch_add(n, Ordering::Relaxed);
    }
}

pub fn count_cache_hit() {
    add(|c| &c.hits, |c| c.hits += 1, 1);
}

pub fn count_cache_miss() {
    add(|c| &c.misses, |c| c.misses += 1, 1);
}

/// Adds committed drained events (the cache calls it when the draining transaction commits).
pub fn count_drained(events: u64) {
    if events > 0 {
        add(|c| &c.drained, |c| c.drained += events, events);
    }
}

/// This database's cache counters.
pub fn cache_counters() -> CacheCounters {
    if !ready() {
        return BACKEND_COUNTERS.with(Cell::get);
    }
    my_counters()
        .map(|c| CacheCounters {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            drained: c.drained.load(Ordering::Relaxed),
        })
        .unwrap_or_default()
}

// ---- latches --------------------------------------------------------------------------------

/// Publishes the calling worker's latch in the slot at `index`, for `wake`.
pub fn publish_latch(index: usize) {
    // SAFETY: MyProc is this process's own PGPROC, set once it attached to shared memory (a
    // worker calls this after connecting).
    let procno = unsafe { (*pg_sys::MyProc).pgprocno };
    update(index, |s| s.procno = procno);
}

/// Sets the latch of the worker serving `database`, if one runs.
pub fn wake(database: pg_sys::Oid) {
    let procno = find(database)
        .filter(|s| s.pid != 0 && s.procno >= 0)
        .map(|s| s.procno);
    if let Some(procno) = procno {
        // SAFETY: procno was published by the live worker from its own PGPROC; PGPROCs are never
        // freed, and setting the latch of a process that has just exited is harmless.
        unsafe {
            let proc_ = (*pg_sys::ProcGlobal).allProcs.add(procno as usize);
            pg_sys::SetLatch(&mut (*proc_).procLatch);
        }
    }
}

// ---- the health check's shared result -------------------------------------------------------

/// Room for one health result (a jsonb value, stored as its bytes).
pub const HEALTH_BODY_CAPACITY: usize = 8192;
/// Databases whose results are kept at once. Results are per database (the cache hit ratio and
/// invalid indexes are), and a cluster rarely has more databases behind one health probe.
const HEALTH_SLOTS: usize = 8;

#[derive(Copy, Clone)]
struct HealthSlot {
    database: pg_sys::Oid,
    /// When the stored result was computed (PostgreSQL timestamp, microseconds); 0 when empty.
    checked_at: i64,
    len: usize,
    body: [u8; HEALTH_BODY_CAPACITY],
}

#[derive(Copy, Clone)]
pub struct SharedHealth {
    slots: [HealthSlot; HEALTH_SLOTS],
}

impl Default for SharedHealth {
    fn default() -> Self {
        let empty = HealthSlot {
            database: pg_sys::InvalidOid,
            checked_at: 0,
            len: 0,
            body: [0; HEALTH_BODY_CAPACITY],
        };
        SharedHealth {
            slots: [empty; HEALTH_SLOTS],
        }
    }
}

// SAFETY: plain fixed-size data with no pointers.
unsafe impl PGRXSharedMemory for SharedHealth {}

// SAFETY: the name is unique to this lock; pg_shmem_init! in init() sets it up in the same
// startup phase as the slots, so every use, guarded by ready(), finds it initialised.
static HEALTH: PgLwLock<SharedHealth> = unsafe { PgLwLock::new(c"pg_runbook_health_cache") };

/// The stored health result of `database`: when it was computed, and its bytes. None when there
/// is none (or no shared memory).
pub fn load_health(database: pg_sys::Oid) -> Option<(i64, Vec<u8>)> {
    if !ready() {
        return None;
    }
    let guard = HEALTH.share();
    guard
        .slots
        .iter()
        .find(|s| s.database == database && s.checked_at != 0)
        .map(|s| (s.checked_at, s.body[..s.len].to_vec()))
}

/// Stores the health result of `database` in its slot, else in the stalest one; a body larger
/// than `HEALTH_BODY_CAPACITY` is not stored.
pub fn store_health(database: pg_sys::Oid, checked_at: i64, body: &[u8]) {
    if !ready() || body.len() > HEALTH_BODY_CAPACITY {
        return;
    }
    let mut guard = HEALTH.exclusive();
    let index = guard
        .slots
        .iter()
        .position(|s| s.database == database)
        .unwrap_or_else(|| {
            (0..HEALTH_SLOTS)
                .min_by_key(|&i| guard.slots[i].checked_at)
                .unwrap_or(0)
        });
    let slot = &mut guard.slots[index];
    slot.database = database;
    slot.body[..body.len()].copy_from_slice(body);
    slot.len = body.len();
    slot.checked_at = checked_at;
}
