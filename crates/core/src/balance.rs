//! Choosing a server for a request.
//!
//! The data plane calls [`Balancer::pick`] on every request attempt, from every worker thread, so
//! picking takes `&self`, never allocates (round robin allocates only when the number of servers
//! changes) and is one O(n) scan over the servers. Retries pass the servers already tried so that
//! a request never lands twice on the same server.
//!
//! The set of servers is read through [`CandidateSet`] rather than a slice so the shell can hand
//! over a view of its live table (atomics) without first copying it.

mod capacity;
mod fair;
mod round_robin;

pub use capacity::{Capacity, hard_cap, has_room};
pub use fair::Fair;
pub use round_robin::RoundRobin;

/// What the balancer needs to know of one server at the moment of choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Ready to take requests (not stopped/starting/failed/draining, not passively failed).
    pub eligible: bool,
    /// Requests currently in flight to this server (incl. open upgraded connections).
    pub in_flight: u32,
    /// Effective weight >= 1 (config weight, possibly reduced during slow start; treat 0 as 1).
    pub weight: u32,
    /// The most requests it may have in flight now ([`Capacity::cap`]); `None` = no limit. A
    /// server at its cap is passed over as if it were not eligible.
    pub cap: Option<u32>,
}

impl Candidate {
    /// The weight to balance with: a weight of 0 (e.g. slow start rounding down) must not make a
    /// ready server unpickable or divide by zero.
    fn effective_weight(self) -> u32 {
        self.weight.max(1)
    }

    /// Below its cap: may take one more request.
    #[inline]
    pub fn has_room(self) -> bool {
        has_room(self.in_flight, self.cap)
    }
}

/// A view of an upstream's servers, indexed 0..len(), as the balancer sees them.
pub trait CandidateSet {
    fn len(&self) -> usize;
    fn candidate(&self, index: usize) -> Candidate;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CandidateSet for [Candidate] {
    fn len(&self) -> usize {
        <[Candidate]>::len(self)
    }
    fn candidate(&self, index: usize) -> Candidate {
        self[index]
    }
}

impl<const N: usize> CandidateSet for [Candidate; N] {
    fn len(&self) -> usize {
        N
    }
    fn candidate(&self, index: usize) -> Candidate {
        self[index]
    }
}

impl CandidateSet for Vec<Candidate> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn candidate(&self, index: usize) -> Candidate {
        self[index]
    }
}

impl<T: CandidateSet + ?Sized> CandidateSet for &T {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn candidate(&self, index: usize) -> Candidate {
        (**self).candidate(index)
    }
}

/// Which algorithm to balance with. Mirrors the config's `balance` key; kept separate so the
/// pure core does not depend on the config crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Kind {
    /// Idle servers first, then the fewest in-flight requests per unit of weight.
    #[default]
    Fair,
    /// Smooth weighted round robin, blind to load.
    RoundRobin,
}

/// A balancing algorithm. An enum, not a trait object, so the hot path stays generic over the
/// candidate set (and inlinable) instead of going through a vtable.
#[derive(Debug)]
pub enum Balancer {
    Fair(Fair),
    RoundRobin(RoundRobin),
}

impl Balancer {
    pub fn new(kind: Kind) -> Self {
        match kind {
            Kind::Fair => Balancer::Fair(Fair::new()),
            Kind::RoundRobin => Balancer::RoundRobin(RoundRobin::new()),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Balancer::Fair(_) => Kind::Fair,
            Balancer::RoundRobin(_) => Kind::RoundRobin,
        }
    }

    /// Choose a server; `tried` lists servers already tried for this request (skip them).
    /// None when no eligible untried server exists.
    #[inline]
    pub fn pick<S: CandidateSet + ?Sized>(&self, set: &S, tried: &[usize]) -> Option<usize> {
        match self {
            Balancer::Fair(f) => f.pick(set, tried),
            Balancer::RoundRobin(r) => r.pick(set, tried),
        }
    }
}

/// Whether `c`, at `index`, may take this request. `tried` holds at most a few retries, so a
/// linear search beats anything that would need allocating.
#[inline]
fn open(c: Candidate, index: usize, tried: &[usize]) -> bool {
    c.eligible && c.has_room() && !tried.contains(&index)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn c(eligible: bool, in_flight: u32, weight: u32) -> Candidate {
        Candidate {
            eligible,
            in_flight,
            weight,
            cap: None,
        }
    }

    /// A ready server of weight 1 with `in_flight` requests and cap `cap`.
    fn capped(in_flight: u32, cap: Option<u32>) -> Candidate {
        Candidate {
            cap,
            ..c(true, in_flight, 1)
        }
    }

    /// A tiny deterministic generator, so the property tests need no extra dependency and any
    /// failure reproduces exactly.
    pub(crate) struct Lcg(pub u64);

    impl Lcg {
        pub(crate) fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }

        pub(crate) fn below(&mut self, n: u32) -> u32 {
            self.next() % n
        }
    }

    #[test]
    fn balancer_is_shareable_across_workers() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Balancer>();
    }

    #[test]
    fn concurrent_picks_stay_valid() {
        let set = [c(true, 0, 1), c(false, 0, 1), c(true, 2, 2), c(true, 0, 3)];
        for kind in [Kind::Fair, Kind::RoundRobin] {
            let b = Balancer::new(kind);
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..10_000 {
                            let p = b.pick(&set, &[3]).unwrap();
                            assert!(p == 0 || p == 2, "{kind:?} picked {p}");
                        }
                    });
                }
            });
        }
    }

    #[test]
    fn new_builds_the_requested_kind() {
        assert_eq!(Balancer::new(Kind::Fair).kind(), Kind::Fair);
        assert_eq!(Balancer::new(Kind::RoundRobin).kind(), Kind::RoundRobin);
        assert_eq!(Kind::default(), Kind::Fair);
    }

    #[test]
    fn both_kinds_return_none_for_empty_or_exhausted_sets() {
        for kind in [Kind::Fair, Kind::RoundRobin] {
            let b = Balancer::new(kind);
            let empty: [Candidate; 0] = [];
            assert_eq!(b.pick(&empty, &[]), None);
            let set = [c(true, 0, 1), c(false, 0, 1)];
            assert_eq!(b.pick(&set, &[0]), None, "{kind:?}");
            assert_eq!(b.pick(&set, &[]), Some(0), "{kind:?}");
        }
    }

    #[test]
    fn sets_can_be_slices_vecs_arrays_and_references() {
        let b = Balancer::new(Kind::Fair);
        let v = vec![c(false, 0, 1), c(true, 3, 1)];
        assert_eq!(b.pick(&v, &[]), Some(1));
        assert_eq!(b.pick(v.as_slice(), &[]), Some(1));
        assert_eq!(b.pick(&&v[..], &[]), Some(1));
        assert!(!CandidateSet::is_empty(&v));
        assert!(CandidateSet::is_empty(&Vec::new()));
    }

    #[test]
    fn servers_at_their_cap_are_passed_over_table() {
        // (servers as (in_flight, cap), tried) → which servers a pick may return.
        type Row<'a> = (&'a [(u32, Option<u32>)], &'a [usize], &'a [usize]);
        let table: &[Row] = &[
            // No cap: everyone may take more, however loaded.
            (&[(5, None), (9, None)], &[], &[0, 1]),
            // The least loaded is full: the other one, although busier per weight.
            (&[(2, Some(2)), (3, None)], &[], &[1]),
            // Every server at its cap: nobody.
            (&[(2, Some(2)), (1, Some(1))], &[], &[]),
            // Above the cap counts as full too.
            (&[(4, Some(2)), (0, Some(1))], &[], &[1]),
            // One slot left on the second.
            (&[(2, Some(2)), (1, Some(2)), (2, Some(2))], &[], &[1]),
            // Tried and full together leave nothing.
            (&[(2, Some(2)), (0, Some(2))], &[1], &[]),
        ];
        for kind in [Kind::Fair, Kind::RoundRobin] {
            for &(servers, tried, want) in table {
                let set: Vec<_> = servers.iter().map(|&(n, cap)| capped(n, cap)).collect();
                let b = Balancer::new(kind);
                for _ in 0..4 {
                    match b.pick(&set, tried) {
                        None => assert!(want.is_empty(), "{kind:?} {set:?}: none, want {want:?}"),
                        Some(p) => {
                            assert!(want.contains(&p), "{kind:?} {set:?}: {p}, want {want:?}")
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn release_by_capacity_while_a_server_starts() {
        // Two ready servers at target 2 while a third starts: the one with room takes the
        // request; once both carry 2 nobody does, and the request waits for the new server.
        let starting = Capacity {
            target_in_flight: 2,
            starting: true,
        };
        let settled = Capacity {
            target_in_flight: 2,
            starting: false,
        };
        let set = |cap: Capacity, loads: [u32; 2]| -> Vec<Candidate> {
            loads.iter().map(|&n| capped(n, cap.cap(0))).collect()
        };
        let b = Balancer::new(Kind::Fair);
        assert_eq!(b.pick(&set(starting, [2, 1]), &[]), Some(1));
        assert_eq!(b.pick(&set(starting, [2, 2]), &[]), None);
        // Nothing starting: above target is fine, fair balancing as ever.
        assert_eq!(b.pick(&set(settled, [3, 2]), &[]), Some(1));
        assert!(b.pick(&set(settled, [7, 7]), &[]).is_some());
    }
}
