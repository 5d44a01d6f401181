//! What the cache publishes only when the transaction commits: the wake-up of the database's
//! worker after an enqueue (earlier, the worker would look before the events are visible), and
//! the drained events counted by `cache_stats()` (a rolled-back drain, or subtransaction, drained
//! nothing).

use crate::shmem;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};

thread_local! {
    static WAKE_PENDING: Cell<bool> = const { Cell::new(false) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// Events drained in this transaction, by subtransaction nesting level: they reach
    /// cache_stats() only when the top transaction commits, and a rolled-back subtransaction
    /// (a failed batch, a PL/pgSQL EXCEPTION block) takes its own away.
    static DRAINED_PENDING: RefCell<Vec<(i32, u64)>> = const { RefCell::new(Vec::new()) };
}

fn register_callbacks() {
    if !CALLBACK_REGISTERED.with(|r| r.replace(true)) {
        // SAFETY: plain function pointers with no argument, registered once per backend.
        unsafe {
            pg_sys::RegisterXactCallback(Some(on_xact_end), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(on_subxact_end), std::ptr::null_mut());
        }
    }
}

/// Asks for this database's worker to be woken when the current transaction commits (waking it
/// earlier would let it look before the events are visible).
pub(super) fn wake_at_commit() {
    if !crate::settings::WAKE_ON_ENQUEUE.get() {
        return;
    }
    WAKE_PENDING.with(|w| w.set(true));
    register_callbacks();
}

/// Counts drained events toward cache_stats() once the transaction that deleted them commits.
pub(super) fn count_drained_at_commit(events: i64) {
    if events <= 0 {
        return;
    }
    let level = transaction_nest_level();
    DRAINED_PENDING.with(|p| p.borrow_mut().push((level, events as u64)));
    register_callbacks();
}

#[pg_guard]
extern "C-unwind" fn on_xact_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => {
            let drained: u64 = DRAINED_PENDING.with(|p| p.take().iter().map(|(_, n)| n).sum());
            shmem::count_drained(drained);
            if WAKE_PENDING.with(|w| w.replace(false)) {
                shmem::wake(crate::backend::database());
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            DRAINED_PENDING.with(|p| p.borrow_mut().clear());
            WAKE_PENDING.with(|w| w.set(false));
        }
        _ => {}
    }
}

#[pg_guard]
extern "C-unwind" fn on_subxact_end(
    event: pg_sys::SubXactEvent::Type,
    _my_subid: pg_sys::SubTransactionId,
    _parent_subid: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    // Called while the ending subtransaction is still the current one.
    let level = transaction_nest_level();
    match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => {
            DRAINED_PENDING.with(|p| p.borrow_mut().retain(|(l, _)| *l < level));
        }
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => DRAINED_PENDING.with(|p| {
            for entry in p.borrow_mut().iter_mut().filter(|(l, _)| *l >= level) {
                entry.0 = level - 1;
            }
        }),
        _ => {}
    }
}

/// The nesting level of the current (sub)transaction: 1 in a top-level transaction.
fn transaction_nest_level() -> i32 {
    // SAFETY: reads the backend-local transaction state; callers run inside a transaction.
    unsafe { pg_sys::GetCurrentTransactionNestLevel() }
}
