//! The drain's bookkeeping between batches, and the worker's backoff: pure rules, shared by the
//! SQL function, the committing procedure and the background worker.

use std::time::Duration;

/// What one batch of the invalidation drain did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Events the batch claimed (locked) from the queue, in id order after the cursor's `after_id`.
    pub claimed: i64,
    /// Events deleted from the queue (finished, malformed or coalesced into a finished tag).
    pub events_done: i64,
    /// Claimed events left queued: a cache row they name was locked by another session, or a
    /// tag still has entries beyond this batch's chunk.
    pub unfinished: i64,
    /// Cache entries the batch deleted.
    pub entries_deleted: i64,
    /// The highest id claimed (the `after_id` given when none was).
    pub max_id: i64,
    /// Malformed events moved to cache_invalidation_rejected.
    pub rejected: i64,
}

impl BatchOutcome {
    fn progressed(&self) -> bool {
        self.events_done > 0 || self.entries_deleted > 0
    }
}

/// Where a drain stands between batches: claim ids above `after_id`; `progressed` says whether
/// any batch since the drain last went back to the start finished an event or deleted an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub after_id: i64,
    pub progressed: bool,
}

impl Cursor {
    pub const START: Cursor = Cursor {
        after_id: 0,
        progressed: false,
    };
}

/// Where the next batch starts, or `None` when the drain is over. A full batch goes on after its
/// last id, so it never rescans what earlier batches left behind. After a short one the drain
/// goes back to the start, for events that committed late with a lower id and for unfinished
/// ones (a large tag, chunk by chunk), but only when something was done since it last went back:
/// events left unfinished because other sessions hold their rows (or, within one transaction,
/// because this drain holds them itself) would otherwise be claimed again and again. The next
/// round retries them.
pub fn next(cursor: Cursor, batch_size: i64, b: &BatchOutcome) -> Option<Cursor> {
    let progressed = cursor.progressed || b.progressed();
    if b.claimed >= batch_size {
        return Some(Cursor {
            after_id: b.max_id,
            progressed,
        });
    }
    if progressed && (cursor.after_id > 0 || b.unfinished > 0) {
        return Some(Cursor::START);
    }
    None
}

/// The drain loop, one for every caller (the SQL function, the worker): batch after batch from
/// the start of the queue, each run by `run_batch` with the id to claim after (the caller gives
/// it its transaction), until `next` says the queue has nothing left this round, a batch fails,
/// or `after_batch` says stop. Returns the events finished by the batches that succeeded, and
/// the failure that ended the drain, if one did.
pub fn drain_batches<E>(
    batch_size: i32,
    mut run_batch: impl FnMut(i64) -> Result<BatchOutcome, E>,
    mut after_batch: impl FnMut(&BatchOutcome) -> bool,
) -> (i64, Option<E>) {
    let mut cursor = Some(Cursor::START);
    let mut total = 0i64;
    while let Some(at) = cursor {
        let b = match run_batch(at.after_id) {
            Ok(b) => b,
            Err(e) => return (total, Some(e)),
        };
        total += b.events_done;
        cursor = next(at, batch_size as i64, &b);
        if !after_batch(&b) {
            break;
        }
    }
    (total, None)
}

/// How many distinct tags one batch works on, and how many entries per tag it may delete, so
/// that a batch deletes at most about `max_entries` entries by tag whatever the tags' sizes.
/// Each tag gets at least `MIN_PER_TAG` entries, so a batch of many small tags finishes them.
pub const MIN_PER_TAG: i64 = 100;

pub fn tags_per_batch(max_entries: i64) -> i64 {
    (max_entries / MIN_PER_TAG).max(1)
}

/// The wait before connection attempt `attempt` (1-based) to a database that failed: doubling
/// from `base`, capped at `cap`. The first attempt does not wait.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    if attempt <= 1 {
        return Duration::ZERO;
    }
    let doublings = (attempt - 2).min(30);
    base.saturating_mul(1u32 << doublings).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(claimed: i64, done: i64, unfinished: i64, deleted: i64, max_id: i64) -> BatchOutcome {
        BatchOutcome {
            claimed,
            events_done: done,
            unfinished,
            entries_deleted: deleted,
            max_id,
            rejected: 0,
        }
    }

    fn at(after_id: i64, progressed: bool) -> Cursor {
        Cursor {
            after_id,
            progressed,
        }
    }

    /// A queue of events 1..=`events`; each batch claims up to `size` queued ids above
    /// `after_id` and finishes (deletes) every one of them.
    fn queue_of(events: i64, size: i64) -> impl FnMut(i64) -> Result<BatchOutcome, &'static str> {
        let mut queued: Vec<i64> = (1..=events).collect();
        move |after_id| {
            let claimed: Vec<i64> = queued
                .iter()
                .copied()
                .filter(|&id| id > after_id)
                .take(size as usize)
                .collect();
            queued.retain(|id| !claimed.contains(id));
            let n = claimed.len() as i64;
            let max_id = claimed.last().copied().unwrap_or(after_id);
            Ok(batch(n, n, 0, n, max_id))
        }
    }

    #[test]
    fn the_drain_loop_runs_batches_until_the_queue_is_empty() {
        let mut seen = Vec::new();
        let mut run = queue_of(25, 10);
        let (total, failure) = drain_batches(
            10,
            |after_id| {
                seen.push(after_id);
                run(after_id)
            },
            |_| true,
        );
        assert_eq!((total, failure), (25, None));
        // Full batches go on after their last id; the short one goes back to the start once,
        // finds nothing, and the drain ends.
        assert_eq!(seen, vec![0, 10, 20, 0]);
    }

    #[test]
    fn the_drain_loop_stops_at_a_failed_batch_keeping_what_was_done() {
        let mut calls = 0;
        let mut run = queue_of(100, 10);
        let (total, failure) = drain_batches(
            10,
            |after_id| {
                calls += 1;
                if calls == 3 {
                    Err("lock timeout")
                } else {
                    run(after_id)
                }
            },
            |_| true,
        );
        assert_eq!((total, failure), (20, Some("lock timeout")));
    }

    #[test]
    fn the_drain_loop_stops_when_the_caller_says_so() {
        let mut batches = 0;
        let (total, failure) = drain_batches(10, queue_of(100, 10), |_| {
            batches += 1;
            batches < 2
        });
        assert_eq!((total, failure), (20, None));
    }

    #[test]
    fn a_full_batch_continues_after_its_last_id() {
        assert_eq!(
            next(Cursor::START, 10, &batch(10, 10, 0, 5, 42)),
            Some(at(42, true))
        );
    }

    #[test]
    fn a_short_batch_goes_back_to_the_start_once_after_progress() {
        assert_eq!(
            next(at(42, true), 10, &batch(0, 0, 0, 0, 42)),
            Some(Cursor::START)
        );
        assert_eq!(next(Cursor::START, 10, &batch(3, 3, 0, 1, 50)), None);
    }

    #[test]
    fn a_large_tag_is_drained_chunk_by_chunk_while_it_progresses() {
        assert_eq!(
            next(Cursor::START, 10, &batch(1, 0, 1, 5000, 7)),
            Some(Cursor::START)
        );
        assert_eq!(next(Cursor::START, 10, &batch(1, 1, 0, 300, 7)), None);
    }

    #[test]
    fn rows_locked_by_others_end_the_drain_instead_of_spinning() {
        assert_eq!(next(Cursor::START, 10, &batch(1, 0, 1, 0, 7)), None);
    }

    #[test]
    fn a_full_batch_of_events_it_cannot_finish_does_not_loop_for_ever() {
        // Ten unfinished events of its own, then nothing new: forward, then over.
        let c = next(Cursor::START, 10, &batch(10, 0, 10, 0, 90)).unwrap();
        assert_eq!(c, at(90, false));
        assert_eq!(next(c, 10, &batch(0, 0, 0, 0, 90)), None);
    }

    #[test]
    fn tags_per_batch_bounds_entries_per_batch() {
        assert_eq!(tags_per_batch(10_000), 100);
        assert_eq!(tags_per_batch(50), 1);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        let waits: Vec<_> = (1..=9).map(|a| backoff(a, s(1), s(60))).collect();
        assert_eq!(
            waits,
            vec![s(0), s(1), s(2), s(4), s(8), s(16), s(32), s(60), s(60)]
        );
        assert_eq!(backoff(u32::MAX, s(1), s(60)), s(60));
    }
}
