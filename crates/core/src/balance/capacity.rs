//! Whether a ready server may take one more request: release by capacity.
//!
//! A server that is already as busy as it should be does not get more requests when more
//! capacity is coming: with a server `starting`, the requests beyond what the ready servers
//! should carry wait for it (held by the data plane) instead of queueing inside a saturated
//! server, where they would wait behind every request already there and stay there even once
//! the new server is up. Without a start under way nothing better is coming, so the servers
//! take everything (the fair balancer spreads it) unless a hard cap says otherwise.

/// What decides a server's cap beyond its own `max_conns`: the upstream's target and whether
/// capacity is on its way. Built once per pick, from the upstream as the data plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// In-flight requests one ready server should carry (`target_in_flight`; 0 counts as 1).
    pub target_in_flight: u32,
    /// Some server of the upstream is `starting`.
    pub starting: bool,
}

impl Capacity {
    /// The most requests a ready server with this `max_conns` (0 = no limit) may have in
    /// flight at once, WebSockets included; `None` = no limit. The hard cap always holds; the
    /// soft cap (the target) only while a start is under way.
    pub fn cap(self, max_conns: u32) -> Option<u32> {
        let hard = hard_cap(max_conns);
        let soft = self.starting.then(|| self.target_in_flight.max(1));
        match (hard, soft) {
            (Some(h), Some(s)) => Some(h.min(s)),
            (h, s) => h.or(s),
        }
    }
}

/// A server's own cap, `max_conns` as configured (0 = no limit): `None` = no limit.
#[inline]
pub fn hard_cap(max_conns: u32) -> Option<u32> {
    (max_conns > 0).then_some(max_conns)
}

/// Whether a server with `in_flight` requests and cap `cap` may take one more.
#[inline]
pub fn has_room(in_flight: u32, cap: Option<u32>) -> bool {
    cap.is_none_or(|cap| in_flight < cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_table() {
        // (max_conns, target, starting) → cap
        let table: &[(u32, u32, bool, Option<u32>)] = &[
            // Nothing starting, no max_conns: no limit, even far above target.
            (0, 2, false, None),
            (0, 0, false, None),
            // A hard cap holds whether or not something starts.
            (2, 10, false, Some(2)),
            (2, 10, true, Some(2)),
            // A start under way caps at the target...
            (0, 2, true, Some(2)),
            // ...or at max_conns when that is lower or higher, whichever is lower.
            (8, 2, true, Some(2)),
            (1, 2, true, Some(1)),
            // A target of 0 counts as 1: a ready server always takes at least one.
            (0, 0, true, Some(1)),
            (u32::MAX, 3, false, Some(u32::MAX)),
        ];
        for &(max_conns, target_in_flight, starting, want) in table {
            let c = Capacity {
                target_in_flight,
                starting,
            };
            assert_eq!(
                c.cap(max_conns),
                want,
                "max_conns {max_conns}, target {target_in_flight}, starting {starting}"
            );
        }
    }

    #[test]
    fn room_table() {
        // (in_flight, cap) → room
        let table: &[(u32, Option<u32>, bool)] = &[
            (0, None, true),
            (u32::MAX, None, true),
            (0, Some(1), true),
            (1, Some(1), false),
            (1, Some(2), true),
            (2, Some(2), false),
            // Above the cap (a reload lowered it, or the soft cap arrived with a start): full.
            (5, Some(2), false),
        ];
        for &(in_flight, cap, want) in table {
            assert_eq!(has_room(in_flight, cap), want, "{in_flight} of {cap:?}");
        }
    }
}
