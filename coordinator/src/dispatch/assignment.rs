//! Which pending units a polling worker gets: a pure function of what the leader knows, so
//! that it can be property-tested (DESIGN.md §3).
//!
//! Rules: never more units than the worker's free slots, plus its prefetch (units it queues
//! behind busy slots) from runs without a MaxConcurrency only — a queued unit holds a lease
//! without running, and under a cap it would take the place of a child another worker could
//! run; never more leases out per map run than fit its MaxConcurrency (0 means AWS's ceiling of
//! 10,000 children) when each counts as the children its unit runs at once (its parallelism,
//! `stepmap_worker::map_run::UnitGrouping`; one lease at a time, granted fewer children at
//! once, when the MaxConcurrency is below a unit's parallelism); each run's units in number
//! order (results and PENDING records follow item order, and an early unit failing is found
//! early); runs share the slots round-robin, so one large run does not starve the others.

/// AWS's ceiling on a map run's parallel children ("MaxConcurrency 0 ⇒ up to 10,000").
pub const MAX_CONCURRENCY_CEILING: u64 = 10_000;

/// One map run as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDemand {
    /// 0: the ceiling.
    pub max_concurrency: u64,
    /// Children one of its units runs at once (at least 1).
    pub parallelism: u64,
    /// Leases out now.
    pub leased: u64,
    /// Pending unit numbers, in order (the first few are enough: at most what the worker
    /// asks for).
    pub pending: Vec<u64>,
}

impl RunDemand {
    fn room(&self) -> u64 {
        let cap = match self.max_concurrency {
            0 => MAX_CONCURRENCY_CEILING,
            n => n.min(MAX_CONCURRENCY_CEILING),
        };
        // The planner keeps a unit's parallelism within half the MaxConcurrency; should an
        // UpdateMapRun lower it below one unit's, one unit at a time runs, granted as many
        // children at once as the MaxConcurrency (`Assigned::parallelism`).
        (cap / self.parallelism.max(1)).max(1).saturating_sub(self.leased)
    }

    /// Children a unit leased now may run at once: its parallelism, or the MaxConcurrency when
    /// that is lower (then it is the only lease out, see [`Self::room`]).
    pub fn at_once(&self) -> u64 {
        match self.max_concurrency {
            0 => self.parallelism,
            cap => self.parallelism.min(cap),
        }
        .max(1)
    }
}

/// The units to lease to a worker with `free_slots` and a `prefetch`: `(index into runs,
/// unit)` pairs, the free slots' first.
pub fn assign(free_slots: u64, prefetch: u64, runs: &[RunDemand]) -> Vec<(usize, u64)> {
    let mut taken = vec![0u64; runs.len()];
    let mut out = Vec::new();
    round_robin(free_slots, runs, |_| true, &mut taken, &mut out);
    round_robin(prefetch, runs, |run| run.max_concurrency == 0, &mut taken, &mut out);
    out
}

/// Adds up to `count` units to `out`, one per `eligible` run in turn, after the `taken` ones.
fn round_robin(
    count: u64,
    runs: &[RunDemand],
    eligible: impl Fn(&RunDemand) -> bool,
    taken: &mut [u64],
    out: &mut Vec<(usize, u64)>,
) {
    let limit = out.len() as u64 + count;
    loop {
        let mut progressed = false;
        for (index, run) in runs.iter().enumerate() {
            if out.len() as u64 >= limit {
                return;
            }
            let next = taken[index];
            if eligible(run) && next < run.room() && (next as usize) < run.pending.len() {
                out.push((index, run.pending[next as usize]));
                taken[index] += 1;
                progressed = true;
            }
        }
        if !progressed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn slots_are_shared_round_robin_within_max_concurrency() {
        let runs = vec![
            RunDemand { max_concurrency: 0, parallelism: 1, leased: 0, pending: vec![0, 1, 2, 3] },
            RunDemand { max_concurrency: 2, parallelism: 1, leased: 1, pending: vec![5, 6, 7] },
        ];
        assert_eq!(assign(4, 0, &runs), vec![(0, 0), (1, 5), (0, 1), (0, 2)]);
        assert_eq!(assign(0, 0, &runs), vec![]);
        let full = RunDemand { max_concurrency: 1, parallelism: 1, leased: 1, pending: vec![1] };
        assert_eq!(assign(3, 0, &[full]), vec![]);
    }

    #[test]
    fn units_that_run_children_at_once_count_as_that_many() {
        let run =
            |max_concurrency, leased| RunDemand { max_concurrency, parallelism: 4, leased, pending: vec![0, 1, 2] };
        assert_eq!(assign(3, 0, &[run(8, 0)]), vec![(0, 0), (0, 1)], "two units of 4 children fill 8");
        assert_eq!(assign(3, 0, &[run(8, 1)]), vec![(0, 0)]);
        assert_eq!(assign(3, 0, &[run(9, 2)]), vec![]);
        assert_eq!(assign(3, 0, &[run(2, 0)]), vec![(0, 0)], "a cap lowered below one unit still runs one");
        assert_eq!(assign(3, 0, &[run(2, 1)]), vec![]);
        assert_eq!((run(8, 0).at_once(), run(0, 0).at_once(), run(2, 0).at_once()), (4, 4, 2));
    }

    #[test]
    fn a_prefetch_comes_only_from_runs_without_max_concurrency() {
        let runs = vec![
            RunDemand { max_concurrency: 5, parallelism: 1, leased: 0, pending: vec![0, 1, 2, 3] },
            RunDemand { max_concurrency: 0, parallelism: 1, leased: 0, pending: vec![7, 8, 9] },
        ];
        assert_eq!(assign(1, 3, &runs), vec![(0, 0), (1, 7), (1, 8), (1, 9)]);
        assert_eq!(assign(0, 2, &runs[..1]), vec![], "a capped run has no prefetch");
    }

    fn demand() -> impl Strategy<Value = RunDemand> {
        (0..9u64, 1..4u64, 0..5u64, 0..8usize).prop_map(|(max_concurrency, parallelism, leased, pending)| RunDemand {
            max_concurrency,
            parallelism,
            leased,
            pending: (100..100 + pending as u64).collect(),
        })
    }

    proptest! {
        #[test]
        fn assignments_respect_slots_concurrency_and_order(
            free_slots in 0..12u64,
            prefetch in 0..6u64,
            runs in proptest::collection::vec(demand(), 0..4),
        ) {
            let assigned = assign(free_slots, prefetch, &runs);
            prop_assert!(assigned.len() as u64 <= free_slots + prefetch);
            let capped = assigned.iter().filter(|(i, _)| runs[*i].max_concurrency != 0).count() as u64;
            prop_assert!(capped <= free_slots, "a prefetch never comes from a capped run");
            for (index, run) in runs.iter().enumerate() {
                let units: Vec<u64> = assigned.iter().filter(|(i, _)| *i == index).map(|(_, u)| *u).collect();
                // Within MaxConcurrency, and the first pending units in order.
                prop_assert!(units.len() as u64 <= run.room());
                // Children at once within the cap, or a single unit's when it exceeds the cap.
                let cap = if run.max_concurrency == 0 { MAX_CONCURRENCY_CEILING } else { run.max_concurrency };
                let children = (run.leased + units.len() as u64) * run.parallelism;
                prop_assert!(units.is_empty() || children <= cap.max(run.parallelism));
                prop_assert_eq!(&units[..], &run.pending[..units.len()]);
                // Maximal: a run is left with work and room only when what it may take ran out.
                let left = run.pending.len() > units.len() && (units.len() as u64) < run.room();
                let may_take = free_slots + if run.max_concurrency == 0 { prefetch } else { 0 };
                prop_assert!(!left || assigned.len() as u64 >= may_take);
            }
        }
    }
}
