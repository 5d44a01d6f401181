//! Materialized view refresh rules: the dependency order, which views to skip after a failure,
//! and whether a view's sources changed since its last refresh.

use std::collections::BTreeMap;

/// The order in which to refresh `n` views, given `edges` of `(view, depends_on)` indices: every
/// view after the views it is built on, and otherwise in input order (callers pass views sorted
/// by name, so the order is stable). Edges to unknown indices and self-edges are ignored.
///
/// PostgreSQL does not allow cycles between materialized views, but the order must not loop or
/// lose a view if the catalog ever shows one: views left on a cycle come last, in input order,
/// and are returned in the second vector too.
pub fn refresh_order(n: usize, edges: &[(usize, usize)]) -> (Vec<usize>, Vec<usize>) {
    let mut waiting_on = vec![0usize; n];
    let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut seen = std::collections::BTreeSet::new();
    for &(view, on) in edges {
        if view < n && on < n && view != on && seen.insert((view, on)) {
            waiting_on[view] += 1;
            dependants[on].push(view);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| waiting_on[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(next) = ready.pop_first() {
        order.push(next);
        for &d in &dependants[next] {
            waiting_on[d] -= 1;
            if waiting_on[d] == 0 {
                ready.insert(d);
            }
        }
    }
    let cyclic: Vec<usize> = (0..n).filter(|&i| waiting_on[i] > 0).collect();
    order.extend(cyclic.iter().copied());
    (order, cyclic)
}

/// What became of one view in a run, as far as its dependants care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failed,
    Skipped,
    Unchanged,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// How a view is refreshed: CONCURRENTLY (readers go on; needs a usable unique index and a
/// populated view) or plainly (readers wait for the refresh).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshMode {
    Concurrent,
    Plain,
}

impl RefreshMode {
    pub fn of(concurrent: bool) -> Self {
        if concurrent {
            RefreshMode::Concurrent
        } else {
            RefreshMode::Plain
        }
    }

    /// As mv_refresh_log.mode and the refresh functions' `mode` column spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshMode::Concurrent => "concurrent",
            RefreshMode::Plain => "plain",
        }
    }
}

/// Tracks outcomes during a run and says which views to skip: a view built on a view that failed,
/// or was itself skipped, would be refreshed from stale or broken data.
#[derive(Debug, Clone)]
pub struct SkipTracker {
    names: Vec<String>,
    depends_on: Vec<Vec<usize>>,
    outcome: Vec<Option<Outcome>>,
}

impl SkipTracker {
    /// `names[i]` is view i's name (for the reason given); `edges` as for [`refresh_order`].
    pub fn new(names: Vec<String>, edges: &[(usize, usize)]) -> Self {
        let n = names.len();
        let mut depends_on = vec![Vec::new(); n];
        for &(view, on) in edges {
            if view < n && on < n && view != on && !depends_on[view].contains(&on) {
                depends_on[view].push(on);
            }
        }
        SkipTracker {
            names,
            depends_on,
            outcome: vec![None; n],
        }
    }

    /// Why view `i` must be skipped, naming the upstream view that failed or was skipped; `None`
    /// when it may be refreshed.
    pub fn skip_reason(&self, i: usize) -> Option<String> {
        self.depends_on
            .get(i)?
            .iter()
            .find_map(|&on| match self.outcome[on] {
                Some(Outcome::Failed) => {
                    Some(format!("depends on {}, which failed", self.names[on]))
                }
                Some(Outcome::Skipped) => {
                    Some(format!("depends on {}, which was skipped", self.names[on]))
                }
                _ => None,
            })
    }

    pub fn record(&mut self, i: usize, outcome: Outcome) {
        if let Some(slot) = self.outcome.get_mut(i) {
            *slot = Some(outcome);
        }
    }
}

/// One source relation's state: its write counter (inserts + updates + deletes) and its file
/// (TRUNCATE and a plain REFRESH give a relation a new file without counting writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceState {
    pub writes: i64,
    pub filenode: u32,
}

/// With only_if_changed: true when a refresh can be skipped, that is when the view was refreshed
/// before (`previous` is that refresh's snapshot, empty when there was none) and each of its
/// sources now is exactly as it was then. A view with no source tables (built on functions only)
/// cannot be judged and is always refreshed.
pub fn sources_unchanged(
    previous: &BTreeMap<u32, SourceState>,
    now: &BTreeMap<u32, SourceState>,
) -> bool {
    !previous.is_empty() && previous == now
}

/// How many workers a parallel run starts: the caller's `requested` count, capped by the server's
/// `cap` (so a refresh never takes every worker slot), by the background worker slots free now less
/// one kept for others, and by the number of views; at least one whenever there is a view (a run
/// that cannot get that one slot fails to start with a clear error instead).
pub fn parallelism(requested: usize, cap: usize, free_slots: usize, views: usize) -> usize {
    if views == 0 {
        return 0;
    }
    requested
        .min(cap)
        .min(free_slots.saturating_sub(1))
        .min(views)
        .max(1)
}

/// Where each view of a parallel run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    Pending,
    Claimed,
    Done,
}

/// Each view's priority in a run on several workers: the expected time of the longest chain of
/// views built on it, itself included. `expected_ms` is each view's refresh time as last logged;
/// a view without one counts as the mean of those known (1 when none is). A worker takes the
/// ready view of highest priority (see [`next_ready`]), so long chains start early and long views
/// go before short ones, and the run does not end on one worker alone with a long view (list
/// scheduling by critical path). With no time known this is each view's height: the number of
/// views on the longest chain built on it.
pub fn priorities(expected_ms: &[Option<f64>], edges: &[(usize, usize)]) -> Vec<f64> {
    let n = expected_ms.len();
    let known: Vec<f64> = expected_ms
        .iter()
        .flatten()
        .copied()
        .filter(|ms| ms.is_finite() && *ms > 0.0)
        .collect();
    let fallback = if known.is_empty() {
        1.0
    } else {
        known.iter().sum::<f64>() / known.len() as f64
    };
    let cost: Vec<f64> = expected_ms
        .iter()
        .map(|ms| {
            ms.filter(|ms| ms.is_finite() && *ms > 0.0)
                .unwrap_or(fallback)
        })
        .collect();
    let (order, _) = refresh_order(n, edges);
    let mut priority = cost.clone();
    for &i in order.iter().rev() {
        for &(view, on) in edges {
            if on == i && view != on && view < n {
                priority[i] = priority[i].max(cost[i] + priority[view]);
            }
        }
    }
    priority
}

/// The next view a worker may take: among the pending views whose every dependency is done, the
/// one with the greatest `priority` (see [`priorities`]), the earliest in refresh order among
/// equals. `None` when every pending view still waits for one that is not done.
pub fn next_ready(
    states: &[SlotState],
    edges: &[(usize, usize)],
    priority: &[f64],
) -> Option<usize> {
    (0..states.len())
        .filter(|&i| {
            states[i] == SlotState::Pending
                && edges
                    .iter()
                    .filter(|&&(view, on)| view == i && on != i && on < states.len())
                    .all(|&(_, on)| states[on] == SlotState::Done)
        })
        .max_by(|&a, &b| {
            let pa = priority.get(a).copied().unwrap_or(0.0);
            let pb = priority.get(b).copied().unwrap_or(0.0);
            pa.total_cmp(&pb).then(b.cmp(&a))
        })
}

/// The slowest chain of a run: the dependency path whose refresh durations add up to the most
/// (with parallel workers, the run cannot be shorter than it). Returns the views from the base
/// upwards and their summed milliseconds; a run without views gives an empty chain.
pub fn slowest_chain(durations_ms: &[f64], edges: &[(usize, usize)]) -> (Vec<usize>, f64) {
    let n = durations_ms.len();
    let (order, _) = refresh_order(n, edges);
    let mut total = vec![0.0f64; n];
    let mut via: Vec<Option<usize>> = vec![None; n];
    for &i in &order {
        let before = edges
            .iter()
            .filter(|&&(view, on)| view == i && on != i && on < n)
            .map(|&(_, on)| on)
            .max_by(|&a, &b| total[a].total_cmp(&total[b]));
        total[i] = durations_ms[i] + before.map_or(0.0, |b| total[b]);
        via[i] = before;
    }
    let Some(mut end) = (0..n).max_by(|&a, &b| total[a].total_cmp(&total[b]).then(b.cmp(&a)))
    else {
        return (Vec::new(), 0.0);
    };
    let ms = total[end];
    let mut chain = vec![end];
    while let Some(b) = via[end] {
        chain.push(b);
        end = b;
    }
    chain.reverse();
    (chain, ms)
}

/// The run's verdict against its budget: PASS when the whole run took at most `budget_ms`, FAIL
/// over it; the detail names the slowest chain so a FAIL says where the time went.
pub fn budget_verdict(
    total_ms: f64,
    budget_ms: f64,
    workers: usize,
    views: usize,
    chain: &[String],
    chain_ms: f64,
    human: impl Fn(f64) -> String,
) -> (&'static str, String) {
    let status = if total_ms <= budget_ms {
        "PASS"
    } else {
        "FAIL"
    };
    let relation = if status == "PASS" { "within" } else { "over" };
    let chain_text = if chain.is_empty() {
        "no view refreshed".to_string()
    } else {
        format!("slowest chain {} ({})", chain.join(" -> "), human(chain_ms))
    };
    (
        status,
        format!(
            "{views} views on {workers} worker{} in {}, {relation} the budget of {}; {chain_text}",
            if workers == 1 { "" } else { "s" },
            human(total_ms),
            human(budget_ms)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_mode_is_spelled_as_the_log_table_allows() {
        // mv_refresh_log.mode has CHECK (mode IN ('concurrent', 'plain')).
        assert_eq!(RefreshMode::of(true).as_str(), "concurrent");
        assert_eq!(RefreshMode::of(false).as_str(), "plain");
    }

    #[test]
    fn a_view_on_a_view_comes_after_it_whatever_the_input_order() {
        // 0 is built on 1, 1 on 2.
        let (order, cyclic) = refresh_order(3, &[(0, 1), (1, 2)]);
        assert_eq!(order, vec![2, 1, 0]);
        assert!(cyclic.is_empty());
    }

    #[test]
    fn independent_views_keep_their_input_order() {
        let (order, _) = refresh_order(4, &[(1, 3)]);
        assert_eq!(order, vec![0, 2, 3, 1]);
    }

    #[test]
    fn a_diamond_refreshes_the_base_first_and_the_top_last() {
        let (order, _) = refresh_order(4, &[(3, 1), (3, 2), (1, 0), (2, 0), (3, 0)]);
        assert_eq!(order, vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_cycle_loses_no_view_and_is_reported() {
        let (order, cyclic) = refresh_order(4, &[(1, 2), (2, 1), (3, 2)]);
        assert_eq!(order, vec![0, 1, 2, 3]);
        assert_eq!(cyclic, vec![1, 2, 3]);
    }

    #[test]
    fn duplicate_self_and_out_of_range_edges_are_ignored() {
        let (order, cyclic) = refresh_order(2, &[(0, 1), (0, 1), (1, 1), (0, 7)]);
        assert_eq!(order, vec![1, 0]);
        assert!(cyclic.is_empty());
    }

    fn tracker() -> SkipTracker {
        // b on a, c on b, d on a, e independent
        let names = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        SkipTracker::new(names, &[(1, 0), (2, 1), (3, 0)])
    }

    #[test]
    fn dependants_of_a_failed_view_are_skipped_transitively() {
        let mut t = tracker();
        t.record(0, Outcome::Failed);
        assert_eq!(
            t.skip_reason(1).as_deref(),
            Some("depends on a, which failed")
        );
        t.record(1, Outcome::Skipped);
        assert_eq!(
            t.skip_reason(2).as_deref(),
            Some("depends on b, which was skipped")
        );
        assert!(t.skip_reason(3).is_some());
        assert_eq!(t.skip_reason(4), None);
    }

    #[test]
    fn dependants_of_a_successful_or_unchanged_view_are_refreshed() {
        let mut t = tracker();
        t.record(0, Outcome::Unchanged);
        assert_eq!(t.skip_reason(1), None);
        t.record(1, Outcome::Success);
        assert_eq!(t.skip_reason(2), None);
    }

    fn state(pairs: &[(u32, i64, u32)]) -> BTreeMap<u32, SourceState> {
        pairs
            .iter()
            .map(|&(oid, writes, filenode)| (oid, SourceState { writes, filenode }))
            .collect()
    }

    #[test]
    fn sources_without_writes_are_unchanged() {
        assert!(sources_unchanged(
            &state(&[(1, 10, 100), (2, 0, 200)]),
            &state(&[(1, 10, 100), (2, 0, 200)])
        ));
    }

    #[test]
    fn a_write_a_truncate_or_a_new_source_is_a_change() {
        let before = state(&[(1, 10, 100)]);
        assert!(!sources_unchanged(&before, &state(&[(1, 11, 100)])));
        assert!(!sources_unchanged(&before, &state(&[(1, 10, 101)])));
        assert!(!sources_unchanged(
            &before,
            &state(&[(1, 10, 100), (2, 0, 5)])
        ));
    }

    #[test]
    fn a_view_never_refreshed_or_without_sources_is_refreshed() {
        assert!(!sources_unchanged(&state(&[]), &state(&[(1, 0, 1)])));
        assert!(!sources_unchanged(&state(&[]), &state(&[])));
    }

    #[test]
    fn parallelism_is_capped_by_the_setting_the_free_slots_and_the_views() {
        assert_eq!(parallelism(8, 4, 10, 20), 4);
        assert_eq!(parallelism(2, 4, 10, 20), 2);
        // one free slot is left to others
        assert_eq!(parallelism(8, 8, 3, 20), 2);
        assert_eq!(parallelism(8, 8, 10, 3), 3);
        // never zero while there is a view: the run then fails to start with a clear error
        assert_eq!(parallelism(8, 8, 0, 3), 1);
        assert_eq!(parallelism(8, 8, 10, 0), 0);
    }

    #[test]
    fn a_view_is_ready_only_when_all_it_reads_is_done() {
        use SlotState::*;
        // 2 reads 0 and 1; 3 is independent
        let edges = [(2, 0), (2, 1)];
        let flat = [1.0; 4];
        assert_eq!(
            next_ready(&[Done, Claimed, Pending, Pending], &edges, &flat),
            Some(3)
        );
        assert_eq!(
            next_ready(&[Done, Claimed, Pending, Done], &edges, &flat),
            None
        );
        assert_eq!(
            next_ready(&[Done, Done, Pending, Done], &edges, &flat),
            Some(2)
        );
        assert_eq!(next_ready(&[Done, Done, Done, Done], &edges, &flat), None);
    }

    #[test]
    fn with_no_time_known_the_base_of_the_longest_chain_is_taken_first() {
        use SlotState::*;
        // 0 and 1 are independent; 4 reads 3, which reads 2: the chain 2 -> 3 -> 4 starts first.
        let edges = [(3, 2), (4, 3)];
        let p = priorities(&[None; 5], &edges);
        assert_eq!(p, vec![1.0, 1.0, 3.0, 2.0, 1.0]);
        assert_eq!(next_ready(&[Pending; 5], &edges, &p), Some(2));
        assert_eq!(
            next_ready(&[Pending, Pending, Claimed, Pending, Pending], &edges, &p),
            Some(0)
        );
    }

    #[test]
    fn a_long_view_goes_before_short_ones_and_before_a_shorter_chain() {
        use SlotState::*;
        // 0..3 take 100 ms, 4 takes 600 ms; 6 (50 ms) reads 5 (50 ms): the chain weighs 100.
        let expected = [
            Some(100.0),
            Some(100.0),
            Some(100.0),
            Some(100.0),
            Some(600.0),
            Some(50.0),
            Some(50.0),
        ];
        let edges = [(6, 5)];
        let p = priorities(&expected, &edges);
        assert_eq!(p[4], 600.0);
        assert_eq!(p[5], 100.0);
        assert_eq!(next_ready(&[Pending; 7], &edges, &p), Some(4));
        // among equals, refresh order: view 0 before the chain's base (both 100)
        let taken = [
            Pending, Pending, Pending, Pending, Claimed, Pending, Pending,
        ];
        assert_eq!(next_ready(&taken, &edges, &p), Some(0));
    }

    #[test]
    fn a_view_without_a_logged_time_counts_as_the_mean_of_the_others() {
        let p = priorities(
            &[Some(100.0), None, Some(300.0), Some(f64::NAN), Some(-1.0)],
            &[],
        );
        assert_eq!(p, vec![100.0, 200.0, 300.0, 200.0, 200.0]);
    }

    #[test]
    fn the_slowest_chain_is_the_longest_sum_along_dependencies() {
        // 0 -> 1 -> 2 is a chain of 10 + 10 + 10; 3 alone takes 25; 4 on 3 takes 1.
        let (chain, ms) = slowest_chain(&[10.0, 10.0, 10.0, 25.0, 1.0], &[(1, 0), (2, 1), (4, 3)]);
        assert_eq!(chain, vec![0, 1, 2]);
        assert_eq!(ms, 30.0);
        let (chain, ms) = slowest_chain(&[10.0, 10.0, 10.0, 35.0, 1.0], &[(1, 0), (2, 1), (4, 3)]);
        assert_eq!(chain, vec![3, 4]);
        assert_eq!(ms, 36.0);
        assert_eq!(slowest_chain(&[], &[]), (vec![], 0.0));
    }

    #[test]
    fn the_budget_verdict_passes_under_fails_over_and_names_the_chain() {
        let chain = vec!["a.x".to_string(), "a.y".to_string()];
        let human = |ms: f64| format!("{ms:.0} ms");
        let (status, detail) = budget_verdict(90.0, 100.0, 2, 5, &chain, 60.0, human);
        assert_eq!(status, "PASS");
        assert_eq!(
            detail,
            "5 views on 2 workers in 90 ms, within the budget of 100 ms; slowest chain a.x -> a.y (60 ms)"
        );
        let (status, detail) = budget_verdict(101.0, 100.0, 2, 5, &chain, 60.0, human);
        assert_eq!(status, "FAIL");
        assert!(detail.contains("over the budget of 100 ms"));
        let (status, detail) = budget_verdict(100.0, 100.0, 1, 0, &[], 0.0, human);
        assert_eq!(status, "PASS");
        assert_eq!(
            detail,
            "0 views on 1 worker in 100 ms, within the budget of 100 ms; no view refreshed"
        );
    }
}
