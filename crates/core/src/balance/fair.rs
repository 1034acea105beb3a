//! nginx-upstream-fair's choice, with in-flight requests actually counted (its `nreq` bookkeeping
//! was compiled out of non-debug builds, so in production it degraded to round robin).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Candidate, CandidateSet, open};

/// Idle servers first, then the fewest in-flight requests per unit of weight (nginx-upstream-fair's
/// default "WLC-RR" mode).
///
/// Both the idle pass and the busy pass scan from a shared round-robin cursor, and the cursor moves
/// past every chosen server, so:
/// - consecutive picks rotate across idle servers instead of piling onto the first one. Spreading
///   keeps every ready server's caches, JITs and connection pools warm, and an idle server that is
///   already up costs nothing extra to use (unlike upstream-fair's `no_rr`, the servers that are
///   not up are not candidates at all here, so rotating never wakes one). The price: under light
///   steady traffic every ready server keeps getting requests, so per-server idle time alone will
///   not single out a server to stop;
/// - among equally loaded busy servers ties go round robin, standing in for upstream-fair's
///   "least recently picked" score bits.
///
/// The cursor is a relaxed atomic: two workers racing may read the same value and pick the same
/// server, which only makes one rotation step uneven; the in-flight counts they then raise steer
/// the following picks.
#[derive(Debug, Default)]
pub struct Fair {
    cursor: AtomicUsize,
}

impl Fair {
    pub fn new() -> Self {
        Self::default()
    }

    /// One pass does both of upstream-fair's passes: an idle server has load ratio 0, the lowest
    /// possible, so "first idle from the cursor, else first minimum from the cursor" is exactly
    /// "first minimum from the cursor", with an early exit on idle.
    pub fn pick<S: CandidateSet + ?Sized>(&self, set: &S, tried: &[usize]) -> Option<usize> {
        let n = set.len();
        if n == 0 {
            return None;
        }
        // Modulo on load rather than on store: the set may have shrunk since the last pick.
        let start = self.cursor.load(Ordering::Relaxed) % n;
        let mut best: Option<(usize, Candidate)> = None;
        for step in 0..n {
            let index = wrap(start + step, n);
            let c = set.candidate(index);
            if !open(c, index, tried) {
                continue;
            }
            if c.in_flight == 0 {
                best = Some((index, c));
                break;
            }
            match best {
                Some((_, b)) if !less_loaded(c, b) => {}
                _ => best = Some((index, c)),
            }
        }
        let (chosen, _) = best?;
        self.cursor.store(wrap(chosen + 1, n), Ordering::Relaxed);
        Some(chosen)
    }
}

/// `index` is below `2n`, so one subtraction replaces a division on the hot path.
#[inline]
fn wrap(index: usize, n: usize) -> usize {
    if index >= n { index - n } else { index }
}

/// `a.in_flight / a.weight < b.in_flight / b.weight`, cross-multiplied in u64: exact (no floats)
/// and a u32 times a u32 cannot overflow it.
#[inline]
fn less_loaded(a: Candidate, b: Candidate) -> bool {
    u64::from(a.in_flight) * u64::from(b.effective_weight())
        < u64::from(b.in_flight) * u64::from(a.effective_weight())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::{Lcg, c};

    #[test]
    fn idle_server_wins_over_less_loaded_busy_ones() {
        let f = Fair::new();
        let set = [c(true, 1, 100), c(true, 5, 1), c(true, 0, 1)];
        assert_eq!(f.pick(&set, &[]), Some(2));
    }

    #[test]
    fn fewest_in_flight_when_none_idle() {
        let f = Fair::new();
        let set = [c(true, 4, 1), c(true, 2, 1), c(true, 3, 1)];
        for _ in 0..5 {
            assert_eq!(f.pick(&set, &[]), Some(1));
        }
    }

    #[test]
    fn weight_divides_load() {
        let f = Fair::new();
        // 3/2 = 1.5 beats 2/1 = 2.
        let set = [c(true, 2, 1), c(true, 3, 2)];
        assert_eq!(f.pick(&set, &[]), Some(1));
    }

    #[test]
    fn zero_weight_counts_as_one() {
        let f = Fair::new();
        let set = [c(true, 2, 0), c(true, 3, 1)];
        assert_eq!(f.pick(&set, &[]), Some(0));
    }

    #[test]
    fn equal_ratios_tie_and_alternate() {
        let f = Fair::new();
        // 2 in flight at weight 2 is as loaded as 1 in flight at weight 1.
        let set = [c(true, 2, 2), c(true, 1, 1), c(true, 9, 1)];
        let picks: Vec<_> = (0..6).map(|_| f.pick(&set, &[]).unwrap()).collect();
        assert_eq!(picks, [0, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn tried_servers_are_skipped() {
        let f = Fair::new();
        let set = [c(true, 0, 1), c(true, 0, 1), c(true, 7, 1)];
        assert_eq!(f.pick(&set, &[0, 1]), Some(2));
        assert_eq!(f.pick(&set, &[0, 1, 2]), None);
    }

    #[test]
    fn ineligible_servers_are_skipped() {
        let f = Fair::new();
        let set = [c(false, 0, 1), c(true, 5, 1), c(false, 0, 9)];
        for _ in 0..4 {
            assert_eq!(f.pick(&set, &[]), Some(1));
        }
    }

    #[test]
    fn all_ineligible_is_none() {
        let f = Fair::new();
        let set = [c(false, 0, 1), c(false, 3, 2)];
        assert_eq!(f.pick(&set, &[]), None);
    }

    #[test]
    fn idle_picks_rotate_evenly() {
        let f = Fair::new();
        let set = [c(true, 0, 1), c(false, 0, 1), c(true, 0, 3), c(true, 0, 1)];
        let mut counts = [0u32; 4];
        for _ in 0..300 {
            counts[f.pick(&set, &[]).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 0, 100, 100]);
    }

    #[test]
    fn extreme_loads_and_weights_do_not_overflow() {
        let f = Fair::new();
        let set = [
            c(true, u32::MAX, 1),
            c(true, u32::MAX, u32::MAX),
            c(true, u32::MAX - 1, 1),
        ];
        assert_eq!(f.pick(&set, &[]), Some(1));
    }

    #[test]
    fn survives_the_set_shrinking_under_the_cursor() {
        let f = Fair::new();
        let big = [c(true, 0, 1); 8];
        for _ in 0..7 {
            f.pick(&big, &[]);
        }
        let small = [c(true, 0, 1), c(true, 0, 1)];
        assert!(f.pick(&small, &[]).is_some());
    }

    #[test]
    fn property_pick_is_eligible_untried_and_least_loaded() {
        let f = Fair::new();
        let mut rng = Lcg(0x5eed);
        let mut set = Vec::new();
        let mut tried = Vec::new();
        for _ in 0..20_000 {
            set.clear();
            tried.clear();
            let n = rng.below(20) as usize;
            for _ in 0..n {
                set.push(c(rng.below(4) != 0, rng.below(6), rng.below(5)));
            }
            for i in 0..n {
                if rng.below(5) == 0 {
                    tried.push(i);
                }
            }
            let open: Vec<_> = (0..n)
                .filter(|&i| set[i].eligible && !tried.contains(&i))
                .collect();
            match f.pick(&set, &tried) {
                None => assert!(open.is_empty(), "{set:?} tried {tried:?}"),
                Some(p) => {
                    assert!(open.contains(&p), "picked {p} of {set:?} tried {tried:?}");
                    for &o in &open {
                        assert!(
                            !less_loaded(set[o], set[p]),
                            "{o} is less loaded than pick {p} in {set:?}"
                        );
                    }
                    if open.iter().any(|&o| set[o].in_flight == 0) {
                        assert_eq!(set[p].in_flight, 0);
                    }
                }
            }
        }
    }
}
