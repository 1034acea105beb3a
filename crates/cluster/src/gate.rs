//! Which of the policy's actions a replica may carry out.
//!
//! Every replica runs the scaling policy over the cluster's summed load, so all of them agree
//! on what should run; starting is idempotent (supervisord answers ALREADY_STARTED), so any of
//! them may start or take back a server at once, and a wake never waits for the leader.
//! Removing capacity is another matter: two replicas draining different servers for the same
//! low load would remove two. So the policy's own drains (idle, load) and the stops that
//! follow them are the leader's alone, and only while its lease surely holds; a stop waits
//! until every replica has drained the server. An operator's stop, a reload's and a failure's
//! are local acts and pass.

use rouse_core::policy::{Action, StopReason};

/// Whether this replica may carry out `action` now. `leading`: [`crate::Snapshot::leading`];
/// `drained_everywhere`: [`crate::Snapshot::drained_everywhere`] for the action's server.
pub fn permitted(action: Action, leading: bool, drained_everywhere: bool) -> bool {
    match action {
        Action::Start(_) | Action::Undrain(_) => true,
        Action::Drain(_, why) => !for_the_cluster(why) || leading,
        Action::Stop(_, why) => !for_the_cluster(why) || (leading && drained_everywhere),
    }
}

/// Reasons that come from the cluster's load, which only the leader sees whole.
pub fn for_the_cluster(why: StopReason) -> bool {
    matches!(why, StopReason::Idle | StopReason::Load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_add_capacity_and_only_the_leader_removes_it() {
        for leading in [false, true] {
            assert!(permitted(Action::Start(1), leading, false));
            assert!(permitted(Action::Undrain(1), leading, false));
            for why in [StopReason::Idle, StopReason::Load] {
                assert_eq!(permitted(Action::Drain(1, why), leading, false), leading);
                assert!(!permitted(Action::Stop(1, why), leading, false));
                assert_eq!(permitted(Action::Stop(1, why), leading, true), leading);
            }
            for why in [
                StopReason::Manual,
                StopReason::Failure,
                StopReason::Reload,
                StopReason::Shutdown,
            ] {
                assert!(permitted(Action::Drain(1, why), leading, false));
                assert!(permitted(Action::Stop(1, why), leading, false));
            }
        }
    }
}
