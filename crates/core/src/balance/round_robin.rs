//! Weighted round robin, blind to load.

use std::sync::{Mutex, PoisonError};

use super::{CandidateSet, open};

/// nginx's smooth weighted round robin: each open server's `current` grows by its weight, the
/// largest `current` wins and gives back the total. Over any run of `sum(weights)` picks with a
/// stable set every server gets exactly its weight's share, interleaved (weights 5,1,1 give
/// `a a b a c a a`, not `a a a a a b c`), and weight changes (slow start) take effect at once.
///
/// Chosen over plain rotation because it honours weights; the price is per-server state. It sits
/// behind a `std::sync::Mutex` held for one O(n) scan with no I/O and no allocation, so the lock is
/// short and almost always uncontended. The vector is resized (and reset) only when the number of
/// servers changes, which is the only time picking allocates.
#[derive(Debug, Default)]
pub struct RoundRobin {
    current: Mutex<Vec<i64>>,
}

impl RoundRobin {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn pick<S: CandidateSet + ?Sized>(&self, set: &S, tried: &[usize]) -> Option<usize> {
        let n = set.len();
        if n == 0 {
            return None;
        }
        // A panic elsewhere cannot leave these counters inconsistent in a harmful way: at worst
        // the next few picks are uneven.
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.len() != n {
            // Indices no longer name the same servers; old credit would be misattributed.
            current.clear();
            current.resize(n, 0);
        }
        let mut total: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        for (index, cur) in current.iter_mut().enumerate() {
            let c = set.candidate(index);
            if !open(c, index, tried) {
                continue;
            }
            let weight = i64::from(c.effective_weight());
            // Saturating: currents stay within about +-total in practice, but sets that keep
            // changing under retries must not be able to overflow into a panic.
            *cur = cur.saturating_add(weight);
            total = total.saturating_add(weight);
            if best.is_none_or(|(_, b)| *cur > b) {
                best = Some((index, *cur));
            }
        }
        let (chosen, _) = best?;
        current[chosen] = current[chosen].saturating_sub(total);
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::{Lcg, c};

    #[test]
    fn equal_weights_rotate_evenly() {
        let r = RoundRobin::new();
        let set = [c(true, 0, 1), c(true, 50, 1), c(true, 3, 1)];
        let picks: Vec<_> = (0..6).map(|_| r.pick(&set, &[]).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weights_are_smooth_like_nginx() {
        let r = RoundRobin::new();
        let set = [c(true, 0, 5), c(true, 0, 1), c(true, 0, 1)];
        let picks: Vec<_> = (0..7).map(|_| r.pick(&set, &[]).unwrap()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weighted_distribution_is_exact_over_whole_cycles() {
        let r = RoundRobin::new();
        let set = [
            c(true, 0, 1),
            c(true, 0, 2),
            c(false, 0, 4),
            c(true, 0, 3),
            c(true, 0, 0),
        ];
        let mut counts = [0u32; 5];
        for _ in 0..700 {
            counts[r.pick(&set, &[]).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 200, 0, 300, 100]);
    }

    #[test]
    fn tried_and_ineligible_are_skipped() {
        let r = RoundRobin::new();
        let set = [c(true, 0, 9), c(false, 0, 1), c(true, 0, 1)];
        for _ in 0..10 {
            assert_eq!(r.pick(&set, &[0]), Some(2));
        }
        assert_eq!(r.pick(&set, &[0, 2]), None);
        assert_eq!(r.pick(&[c(false, 0, 1), c(false, 0, 1)], &[]), None);
    }

    #[test]
    fn resizing_the_set_starts_afresh() {
        let r = RoundRobin::new();
        let three = [c(true, 0, 1); 3];
        r.pick(&three, &[]);
        let two = [c(true, 0, 1); 2];
        let picks: Vec<_> = (0..4).map(|_| r.pick(&two, &[]).unwrap()).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }

    #[test]
    fn property_pick_is_eligible_untried_and_fair_share_holds() {
        let r = RoundRobin::new();
        let mut rng = Lcg(42);
        let mut tried = Vec::new();
        for _ in 0..2_000 {
            let n = 1 + rng.below(8) as usize;
            let set: Vec<_> = (0..n)
                .map(|_| c(rng.below(3) != 0, rng.below(4), rng.below(4)))
                .collect();
            tried.clear();
            for i in 0..n {
                if rng.below(6) == 0 {
                    tried.push(i);
                }
            }
            let open: Vec<_> = (0..n)
                .filter(|&i| set[i].eligible && !tried.contains(&i))
                .collect();
            // Fresh state per set, so a whole cycle of sum(weights) picks gives exact shares.
            let r_fresh = RoundRobin::new();
            let total: u32 = open.iter().map(|&i| set[i].weight.max(1)).sum();
            let mut counts = vec![0u32; n];
            for _ in 0..total {
                let p = r_fresh.pick(&set, &tried).unwrap();
                counts[p] += 1;
            }
            for i in 0..n {
                let want = if open.contains(&i) {
                    set[i].weight.max(1)
                } else {
                    0
                };
                assert_eq!(counts[i], want, "{set:?} tried {tried:?}");
            }
            // The shared balancer, fed a changing set, must still only pick open servers.
            match r.pick(&set, &tried) {
                None => assert!(open.is_empty()),
                Some(p) => assert!(open.contains(&p)),
            }
        }
    }
}
