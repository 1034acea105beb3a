use super::*;
use ServerState as S;
use StopReason as R;

const SEC: Duration = Duration::from_secs(1);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn settings() -> ScaleSettings {
    ScaleSettings {
        min_servers: 0,
        max_servers: 4,
        target_in_flight: 10,
        target_rps: None,
        idle_timeout: secs(60),
        scale_down_after: secs(30),
        revive_backoff: Backoff {
            base: SEC,
            max: secs(8),
        },
    }
}

/// A tiny shell: holds the servers, applies actions through the transition table as the real
/// reconciler must, and moves time by hand.
struct Sim {
    t0: Instant,
    now: Instant,
    servers: Vec<ServerView>,
    held: usize,
    rps: f64,
}

impl Sim {
    fn new(states: &[ServerState]) -> Self {
        let t0 = Instant::now();
        let servers = states
            .iter()
            .enumerate()
            .map(|(index, &state)| ServerView {
                index,
                state,
                in_flight: 0,
                since: t0,
                last_active: t0,
            })
            .collect();
        Sim {
            t0,
            now: t0,
            servers,
            held: 0,
            rps: 0.0,
        }
    }

    fn view(&self) -> UpstreamView<'_> {
        UpstreamView {
            servers: &self.servers,
            held: self.held,
            rps: self.rps,
            now: self.now,
        }
    }

    fn at(&mut self, offset: Duration) -> &mut Self {
        self.now = self.t0 + offset;
        self
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn state(&self, i: usize) -> S {
        self.servers[i].state
    }

    fn states(&self) -> Vec<S> {
        self.servers.iter().map(|s| s.state).collect()
    }

    fn count(&self, state: S) -> usize {
        self.servers.iter().filter(|s| s.state == state).count()
    }

    /// Something outside the policy happened (probe, supervisor, data plane).
    fn event(&mut self, i: usize, event: Event) {
        let s = &mut self.servers[i];
        s.state = transition::next(s.state, event).unwrap();
        s.since = self.now;
    }

    /// Requests in flight on server `i`, as if one just started or ended.
    fn load(&mut self, i: usize, in_flight: u32) {
        self.servers[i].in_flight = in_flight;
        self.servers[i].last_active = self.now;
    }

    fn apply(&mut self, actions: &[Action]) {
        for a in actions {
            let s = &mut self.servers[a.index()];
            s.state = transition::next(s.state, a.event())
                .unwrap_or_else(|e| panic!("{a:?} on server {}: {e}", a.index()));
            s.since = self.now;
        }
    }

    /// Decide, then apply the actions as the shell would.
    fn decide(&mut self, p: &mut ScalePolicy) -> Vec<Action> {
        let actions = p.decide(&self.view());
        self.apply(&actions);
        actions
    }

    /// Spreads `total` in-flight requests over the ready servers, lowest index first, as an even
    /// balancer would; draining servers finish theirs at once. Any traffic at all reaches every
    /// ready server within a tick, since the fair balancer rotates over idle servers.
    fn spread(&mut self, total: u32) {
        let ready: Vec<usize> = (0..self.servers.len())
            .filter(|&i| self.state(i) == S::Ready)
            .collect();
        for s in &mut self.servers {
            s.in_flight = 0;
        }
        if ready.is_empty() {
            return;
        }
        let n = ready.len() as u32;
        for (k, &i) in ready.iter().enumerate() {
            let share = total / n + u32::from((k as u32) < total % n);
            self.servers[i].in_flight = share;
            if total > 0 {
                self.servers[i].last_active = self.now;
            }
        }
    }

    /// One second of a world where starts take `start_time` and stops one tick.
    fn tick(&mut self, p: &mut ScalePolicy, start_time: Duration, total: u32) -> Vec<Action> {
        self.advance(SEC);
        for i in 0..self.servers.len() {
            let s = self.servers[i];
            match s.state {
                S::Starting if self.now - s.since >= start_time => self.event(i, Event::Ready),
                S::Stopping => self.event(i, Event::Stopped),
                _ => {}
            }
        }
        self.spread(total);
        self.decide(p)
    }
}

fn policy(settings: ScaleSettings) -> ScalePolicy {
    ScalePolicy::new(settings)
}

// === rule 1: drained ===

#[test]
fn drained_server_is_stopped_for_the_reason_it_was_drained() {
    let mut sim = Sim::new(&[S::Ready, S::Ready]);
    let mut p = policy(ScaleSettings {
        min_servers: 1,
        ..settings()
    });
    sim.at(secs(100)).load(0, 1);
    assert_eq!(sim.decide(&mut p), [Action::Drain(1, R::Idle)]);
    // Not stopped in the same call: a request may have reached it before the drain applied.
    sim.advance(SEC);
    sim.servers[1].in_flight = 2;
    assert_eq!(sim.decide(&mut p), []);
    sim.advance(SEC);
    sim.servers[1].in_flight = 0;
    assert_eq!(sim.decide(&mut p), [Action::Stop(1, R::Idle)]);
    assert_eq!(sim.state(1), S::Stopping);
}

#[test]
fn a_draining_server_with_requests_in_flight_is_never_stopped() {
    let mut sim = Sim::new(&[S::Draining, S::Draining, S::Ready]);
    let mut p = policy(settings());
    p.note_drained(0, R::Manual);
    p.note_drained(1, R::Load);
    sim.servers[0].in_flight = 1;
    sim.servers[1].in_flight = 7;
    sim.load(2, 1);
    for _ in 0..3600 {
        sim.advance(SEC);
        assert_eq!(sim.decide(&mut p), []);
    }
    sim.servers[1].in_flight = 0;
    sim.advance(SEC);
    assert_eq!(sim.decide(&mut p), [Action::Stop(1, R::Load)]);
    sim.servers[0].in_flight = 0;
    sim.advance(SEC);
    assert_eq!(sim.decide(&mut p), [Action::Stop(0, R::Manual)]);
}

#[test]
fn a_drain_the_policy_did_not_make_stops_as_noted_or_else_manual() {
    let mut sim = Sim::new(&[S::Draining, S::Draining, S::Draining]);
    let mut p = policy(settings());
    p.note_drained(1, R::Shutdown);
    p.note_drained(2, R::Idle);
    p.note_drained(2, R::Failure);
    assert_eq!(
        sim.decide(&mut p),
        [
            Action::Stop(0, R::Manual),
            Action::Stop(1, R::Shutdown),
            Action::Stop(2, R::Failure)
        ]
    );
}

// === rule 2: demand from zero ===

#[test]
fn held_request_starts_one_server_the_lowest_stopped() {
    let mut sim = Sim::new(&[S::Failed, S::Stopped, S::Stopped]);
    let mut p = policy(settings());
    sim.held = 1;
    assert_eq!(sim.decide(&mut p), [Action::Start(1)]);
    // Requests piling up while it starts, up to what one server carries at target: no other.
    for held in [5, 10] {
        sim.held = held;
        sim.advance(SEC);
        assert_eq!(sim.decide(&mut p), []);
    }
}

#[test]
fn a_cold_burst_starts_at_once_as_many_servers_as_it_needs_at_target() {
    // The issue's case: wrk -c40, target 2, max_servers 3. Starting one and waiting for it to
    // fill before starting the others left 38 requests queued in the first server.
    let mut sim = Sim::new(&[S::Stopped, S::Stopped, S::Stopped, S::Stopped]);
    let mut p = policy(ScaleSettings {
        target_in_flight: 2,
        max_servers: 3,
        ..settings()
    });
    sim.held = 40;
    assert_eq!(
        sim.decide(&mut p),
        [Action::Start(0), Action::Start(1), Action::Start(2)]
    );
    // However many more arrive: max_servers.
    sim.held = 400;
    sim.advance(SEC);
    assert_eq!(sim.decide(&mut p), []);
}

#[test]
fn a_cold_burst_within_one_servers_target_starts_one() {
    // lifecycle.rs's two hundred concurrent first requests, at target 1000.
    let mut sim = Sim::new(&[S::Stopped, S::Stopped, S::Stopped]);
    let mut p = policy(ScaleSettings {
        target_in_flight: 1000,
        ..settings()
    });
    for held in [1, 200, 1000] {
        sim.held = held;
        let want: &[Action] = if held == 1 { &[Action::Start(0)] } else { &[] };
        assert_eq!(sim.decide(&mut p), want, "{held} held");
        sim.advance(SEC);
    }
}

#[test]
fn a_burst_growing_while_the_first_server_starts_starts_what_it_needs_more() {
    let mut sim = Sim::new(&[S::Stopped, S::Stopped, S::Stopped, S::Stopped]);
    let mut p = policy(ScaleSettings {
        target_in_flight: 2,
        ..settings()
    });
    sim.held = 1;
    assert_eq!(sim.decide(&mut p), [Action::Start(0)]);
    sim.advance(SEC);
    // 5 held at target 2 need 3 servers; one is on its way.
    sim.held = 5;
    assert_eq!(sim.decide(&mut p), [Action::Start(1), Action::Start(2)]);
    sim.advance(SEC);
    assert_eq!(sim.decide(&mut p), []);
}

#[test]
fn a_cold_burst_takes_back_drained_servers_before_starting_cold_ones() {
    let mut sim = Sim::new(&[S::Draining, S::Stopped, S::Stopped]);
    let mut p = policy(ScaleSettings {
        target_in_flight: 2,
        ..settings()
    });
    p.note_drained(0, R::Idle);
    sim.servers[0].in_flight = 0;
    sim.held = 4;
    assert_eq!(sim.decide(&mut p), [Action::Undrain(0), Action::Start(1)]);
}

#[test]
fn no_demand_no_start() {
    let mut sim = Sim::new(&[S::Stopped, S::Failed]);
    let mut p = policy(settings());
    for _ in 0..100 {
        sim.advance(SEC);
        assert_eq!(sim.decide(&mut p), []);
    }
}

#[test]
fn held_request_takes_back_an_idle_drained_server_instead_of_a_cold_start() {
    let mut sim = Sim::new(&[S::Ready, S::Stopped]);
    let mut p = policy(settings());
    sim.at(secs(60));
    assert_eq!(sim.decide(&mut p), [Action::Drain(0, R::Idle)]);
    sim.advance(SEC);
    sim.held = 1;
    assert_eq!(sim.decide(&mut p), [Action::Undrain(0)]);
}

#[test]
fn a_manually_drained_server_is_not_taken_back() {
    let mut sim = Sim::new(&[S::Draining, S::Stopped]);
    let mut p = policy(settings());
    p.note_drained(0, R::Manual);
    sim.servers[0].in_flight = 1;
    sim.held = 1;
    assert_eq!(sim.decide(&mut p), [Action::Start(1)]);
}

#[test]
fn when_every_server_failed_the_first_is_revived_with_backoff() {
    let mut sim = Sim::new(&[S::Failed, S::Failed, S::Failed]);
    let mut p = policy(settings());
    sim.held = 3;
    // Delays 1s, 2s, 4s, 8s, 8s: each revival is paced from when it was issued.
    let mut at = Duration::ZERO;
    for delay in [1, 2, 4, 8, 8] {
        sim.at(at);
        assert_eq!(sim.decide(&mut p), [Action::Start(0)], "at {at:?}");
        assert_eq!(p.next_revive_at(), Some(sim.now + secs(delay)));
        sim.advance(SEC / 2);
        sim.event(0, Event::StartFailed);
        sim.at(at + secs(delay) - Duration::from_millis(1));
        assert_eq!(sim.decide(&mut p), [], "before {delay}s");
        at += secs(delay);
    }
    // The other failed servers were never touched.
    assert_eq!(sim.states(), [S::Failed, S::Failed, S::Failed]);
}

#[test]
fn revival_backoff_resets_once_a_server_is_ready() {
    let mut sim = Sim::new(&[S::Failed, S::Failed]);
    let mut p = policy(settings());
    sim.held = 1;
    assert_eq!(sim.decide(&mut p), [Action::Start(0)]);
    sim.advance(SEC);
    sim.event(0, Event::StartFailed);
    assert_eq!(sim.decide(&mut p), [Action::Start(0)]);
    sim.advance(SEC);
    sim.event(0, Event::Ready);
    sim.held = 0;
    sim.load(0, 1);
    assert_eq!(sim.decide(&mut p), []);
    assert_eq!(p.next_revive_at(), None);
    sim.advance(SEC);
    sim.event(0, Event::Failed);
    sim.held = 1;
    assert_eq!(sim.decide(&mut p), [Action::Start(0)]);
    assert_eq!(p.next_revive_at(), Some(sim.now + SEC));
}

#[test]
fn failed_servers_are_revived_only_when_nothing_else_can_start() {
    let mut sim = Sim::new(&[S::Failed, S::Stopped]);
    let mut p = policy(settings());
    sim.held = 1;
    assert_eq!(sim.decide(&mut p), [Action::Start(1)]);
    // With one server starting, a failed one stays failed.
    sim.advance(secs(10));
    assert_eq!(sim.decide(&mut p), []);
}

#[test]
fn the_floor_counts_as_demand_for_revival() {
    let mut sim = Sim::new(&[S::Failed, S::Failed]);
    let mut p = policy(ScaleSettings {
        min_servers: 1,
        ..settings()
    });
    assert_eq!(sim.decide(&mut p), [Action::Start(0)]);
}

// === rule 3: floor ===

#[test]
fn floor_starts_servers_without_any_request() {
    let mut sim = Sim::new(&[S::Stopped; 4]);
    let mut p = policy(ScaleSettings {
        min_servers: 2,
        ..settings()
    });
    assert_eq!(sim.decide(&mut p), [Action::Start(0), Action::Start(1)]);
    sim.advance(SEC);
    assert_eq!(sim.decide(&mut p), []);
    sim.advance(SEC);
    sim.event(0, Event::Ready);
    sim.event(1, Event::Ready);
    // Idle for ever: still two.
    for _ in 0..600 {
        sim.advance(SEC);
        assert_eq!(sim.decide(&mut p), []);
    }
}

#[test]
fn floor_takes_back_a_drained_server_before_starting_one() {
    let mut sim = Sim::new(&[S::Ready, S::Draining, S::Stopped]);
    let mut p = policy(ScaleSettings {
        min_servers: 2,
        ..settings()
    });
    p.note_drained(1, R::Idle);
    sim.servers[1].in_flight = 1;
    sim.load(0, 1);
    assert_eq!(sim.decide(&mut p), [Action::Undrain(1)]);
}

#[test]
fn floor_is_capped_by_max_servers() {
    let mut sim = Sim::new(&[S::Stopped; 4]);
    let mut p = policy(ScaleSettings {
        min_servers: 3,
        max_servers: 2,
        ..settings()
    });
    assert_eq!(sim.decide(&mut p), [Action::Start(0), Action::Start(1)]);
}

// === rule 4: scale up ===

#[test]
fn scales_up_on_in_flight_at_once_and_counts_starting_servers() {
    let mut sim = Sim::new(&[S::Ready, S::Stopped, S::Stopped, S::Stopped]);
    let mut p = policy(settings());
    sim.load(0, 25);
    assert_eq!(sim.decide(&mut p), [Action::Start(1), Action::Start(2)]);
    // The burst seen again on the next tick: those two are on their way.
    sim.advance(SEC);
    assert_eq!(sim.decide(&mut p), []);
    sim.advance(SEC);
    sim.load(0, 31);
    assert_eq!(sim.decide(&mut p), [Action::Start(3)]);
}

#[test]
fn scales_up_on_requests_per_second() {
    let mut sim = Sim::new(&[S::Ready, S::Stopped, S::Stopped, S::Stopped]);
    let mut p = policy(ScaleSettings {
        target_rps: Some(100.0),
        ..settings()
    });
    sim.load(0, 1);
    sim.rps = 250.0;
    assert_eq!(sim.decide(&mut p), [Action::Start(1), Action::Start(2)]);
}

#[test]
fn rps_is_ignored_without_a_usable_target() {
    for target_rps in [None, Some(0.0), Some(-5.0), Some(f64::NAN)] {
        let mut sim = Sim::new(&[S::Ready, S::Stopped]);
        let mut p = policy(ScaleSettings {
            target_rps,
            ..settings()
        });
        sim.load(0, 1);
        sim.rps = 1e9;
        assert_eq!(sim.decide(&mut p), [], "{target_rps:?}");
    }
}

#[test]
fn held_requests_with_servers_up_ask_for_one_more() {
    let mut sim = Sim::new(&[S::Ready, S::Stopped, S::Stopped]);
    let mut p = policy(settings());
    sim.load(0, 10);
    assert_eq!(sim.decide(&mut p), []);
    sim.advance(SEC);
    sim.held = 1;
    assert_eq!(sim.decide(&mut p), [Action::Start(1)]);
}

#[test]
fn requests_held_while_ready_servers_are_full_are_load() {
    // max_conns = 2 on every server, target 2: both ready servers are full, 6 requests wait
    // for room. 10 requests need 5 servers; max_servers is 4.
    let mut sim = Sim::new(&[S::Ready, S::Ready, S::Stopped, S::Stopped, S::Stopped]);
    let mut p = policy(ScaleSettings {
        target_in_flight: 2,
        ..settings()
    });
    sim.load(0, 2);
    sim.load(1, 2);
    sim.held = 6;
    assert_eq!(sim.decide(&mut p), [Action::Start(2), Action::Start(3)]);
    // Held for room is not low load: nothing drains, idle or not.
    sim.advance(secs(3600));
    sim.held = 1;
    sim.event(2, Event::Ready);
    sim.event(3, Event::Ready);
    sim.load(2, 0);
    sim.load(3, 0);
    let actions = sim.decide(&mut p);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Drain(..))),
        "{actions:?}"
    );
}

#[test]
fn a_server_just_ready_with_requests_still_held_starts_no_other() {
    // The reconciler decides right after marking a server ready, before the requests held for
    // it have left the queue: that is one request's worth of load, not a reason for another
    // server (this used to start server 1 on every cold start).
    let mut sim = Sim::new(&[S::Starting, S::Stopped, S::Stopped]);
    let mut p = policy(settings());
    sim.held = 1;
    assert_eq!(sim.decide(&mut p), []);
    sim.advance(SEC);
    sim.event(0, Event::Ready);
    assert_eq!(sim.decide(&mut p), []);
    // A crowd held for it is load like any other: 25 requests at target 10 need 3 servers.
    sim.held = 25;
    sim.advance(SEC);
    assert_eq!(sim.decide(&mut p), [Action::Start(1), Action::Start(2)]);
}

#[test]
fn scale_up_takes_back_drained_servers_first() {
    let mut sim = Sim::new(&[S::Ready, S::Draining, S::Draining, S::Stopped]);
    let mut p = policy(settings());
    p.note_drained(1, R::Manual);
    p.note_drained(2, R::Load);
    sim.servers[1].in_flight = 1;
    sim.servers[2].in_flight = 1;
    sim.load(0, 28);
    // 30 in flight: 3 servers. 2 is the policy's own drain; 1 was drained by hand.
    assert_eq!(sim.decide(&mut p), [Action::Undrain(2), Action::Start(3)]);
}

#[test]
fn max_servers_is_respected() {
    let mut sim = Sim::new(&[S::Ready, S::Stopped, S::Stopped, S::Stopped]);
    let mut p = policy(ScaleSettings {
        max_servers: 2,
        ..settings()
    });
    sim.load(0, 1000);
    sim.held = 1000;
    assert_eq!(sim.decide(&mut p), [Action::Start(1)]);
    sim.advance(secs(5));
    sim.event(1, Event::Ready);
    assert_eq!(sim.decide(&mut p), []);
}

#[test]
fn failed_servers_are_not_started_for_load() {
    let mut sim = Sim::new(&[S::Ready, S::Failed, S::Stopped, S::Stopping]);
    let mut p = policy(settings());
    sim.load(0, 40);
    assert_eq!(sim.decide(&mut p), [Action::Start(2)]);
}

// === rule 5: scale down on load ===

#[test]
fn scale_down_goes_one_server_at_a_time_spaced_by_scale_down_after() {
    let mut sim = Sim::new(&[S::Ready; 4]);
    let mut p = policy(settings());
    let mut drains = Vec::new();
    for t in 1..=300 {
        // 4 in flight over up to 4 servers: under 40% of 10 per server throughout.
        for a in sim.tick(&mut p, SEC, 4) {
            if let Action::Drain(i, reason) = a {
                assert_eq!(reason, R::Load);
                drains.push((t, i));
            }
        }
    }
    // Low from t=1: drains at 31, 61, 91; then one server is left (min_servers is 0, but the
    // last one goes by idleness only).
    assert_eq!(drains, [(31, 3), (61, 2), (91, 1)]);
    assert_eq!(sim.states(), [S::Ready, S::Stopped, S::Stopped, S::Stopped]);
}

#[test]
fn load_at_forty_percent_resets_the_timer() {
    let mut sim = Sim::new(&[S::Ready, S::Ready]);
    let mut p = policy(settings());
    // 2 servers at target 10: 8 in flight is exactly 40%, not low.
    for _ in 0..29 {
        assert_eq!(sim.tick(&mut p, SEC, 7), []);
    }
    assert_eq!(sim.tick(&mut p, SEC, 8), []);
    for _ in 0..29 {
        assert_eq!(sim.tick(&mut p, SEC, 7), []);
    }
    assert_eq!(sim.tick(&mut p, SEC, 7), []);
    assert_eq!(sim.tick(&mut p, SEC, 7), [Action::Drain(1, R::Load)]);
}

#[test]
fn rps_must_be_low_too() {
    let mut sim = Sim::new(&[S::Ready, S::Ready]);
    let mut p = policy(ScaleSettings {
        target_rps: Some(100.0),
        ..settings()
    });
    // In flight is low, but 80 req/s over 2 servers is 40% of 100: not low.
    sim.rps = 80.0;
    for _ in 0..120 {
        assert_eq!(sim.tick(&mut p, SEC, 1), []);
    }
    sim.rps = 79.0;
    let drained: Vec<_> = (0..31).flat_map(|_| sim.tick(&mut p, SEC, 1)).collect();
    assert_eq!(drained, [Action::Drain(1, R::Load)]);
}

#[test]
fn no_scale_down_while_starting_holding_or_at_the_floor() {
    let mut p = policy(ScaleSettings {
        min_servers: 2,
        ..settings()
    });
    let mut sim = Sim::new(&[S::Ready, S::Ready, S::Starting]);
    for _ in 0..100 {
        // start_time never reached: server 2 stays starting.
        assert_eq!(sim.tick(&mut p, secs(1000), 1), []);
    }
    let mut sim = Sim::new(&[S::Ready, S::Ready, S::Ready]);
    sim.held = 1;
    for _ in 0..100 {
        assert_eq!(sim.tick(&mut p, SEC, 1), []);
    }
    sim.held = 0;
    let actions: Vec<_> = (0..100).flat_map(|_| sim.tick(&mut p, SEC, 1)).collect();
    assert_eq!(
        actions,
        [Action::Drain(2, R::Load), Action::Stop(2, R::Load)]
    );
    assert_eq!(sim.count(S::Ready), 2);
}

// === rule 6: idle ===

#[test]
fn idle_stops_the_last_server_after_idle_timeout_and_not_before() {
    let mut sim = Sim::new(&[S::Ready]);
    let mut p = policy(settings());
    sim.at(secs(59) + Duration::from_millis(999));
    assert_eq!(sim.decide(&mut p), []);
    sim.at(secs(60));
    assert_eq!(sim.decide(&mut p), [Action::Drain(0, R::Idle)]);
    sim.at(secs(61));
    assert_eq!(sim.decide(&mut p), [Action::Stop(0, R::Idle)]);
    sim.at(secs(62));
    sim.event(0, Event::Stopped);
    assert_eq!(sim.decide(&mut p), []);
}

#[test]
fn a_request_restarts_the_idle_clock() {
    let mut sim = Sim::new(&[S::Ready]);
    let mut p = policy(settings());
    sim.at(secs(50)).load(0, 1);
    assert_eq!(sim.decide(&mut p), []);
    sim.at(secs(51)).load(0, 0);
    sim.at(secs(110));
    assert_eq!(sim.decide(&mut p), []);
    sim.at(secs(111));
    assert_eq!(sim.decide(&mut p), [Action::Drain(0, R::Idle)]);
}

#[test]
fn a_server_with_a_long_request_is_not_idle() {
    let mut sim = Sim::new(&[S::Ready]);
    let mut p = policy(settings());
    sim.servers[0].in_flight = 1; // a WebSocket opened at t0
    sim.at(secs(3600));
    assert_eq!(sim.decide(&mut p), []);
}

#[test]
fn idle_drains_highest_first_down_to_min_servers() {
    let mut sim = Sim::new(&[S::Ready; 4]);
    let mut p = policy(ScaleSettings {
        min_servers: 2,
        ..settings()
    });
    sim.at(secs(60));
    assert_eq!(
        sim.decide(&mut p),
        [Action::Drain(3, R::Idle), Action::Drain(2, R::Idle)]
    );
    sim.at(secs(3600));
    assert_eq!(
        sim.decide(&mut p),
        [Action::Stop(2, R::Idle), Action::Stop(3, R::Idle)]
    );
    sim.at(secs(7200));
    assert_eq!(sim.decide(&mut p), []);
}

#[test]
fn idle_time_counts_from_becoming_ready() {
    let mut sim = Sim::new(&[S::Starting]);
    let mut p = policy(settings());
    sim.at(secs(1000));
    sim.event(0, Event::Ready); // last request at t0, long ago
    assert_eq!(sim.decide(&mut p), []);
    sim.at(secs(1059));
    assert_eq!(sim.decide(&mut p), []);
    sim.at(secs(1060));
    assert_eq!(sim.decide(&mut p), [Action::Drain(0, R::Idle)]);
}

#[test]
fn idle_never_drains_below_what_the_load_needs() {
    // Server 1 is idle (the balancer may leave one alone), but 15 in flight need two servers.
    let mut sim = Sim::new(&[S::Ready, S::Ready]);
    let mut p = policy(settings());
    sim.at(secs(100)).load(0, 15);
    assert_eq!(sim.decide(&mut p), []);
}

// === rule 8: no duplicates, determinism ===

#[test]
fn the_same_view_twice_issues_nothing_twice() {
    let views: Vec<(Vec<S>, usize, u32)> = vec![
        (vec![S::Stopped, S::Stopped], 5, 0),
        (vec![S::Failed, S::Failed], 5, 0),
        (vec![S::Ready, S::Stopped, S::Stopped], 0, 30),
        (vec![S::Ready, S::Ready, S::Ready], 0, 0),
        (vec![S::Draining, S::Ready], 0, 0),
    ];
    for (states, held, in_flight) in views {
        let mut sim = Sim::new(&states);
        let mut p = policy(settings());
        sim.held = held;
        sim.servers[0].in_flight = in_flight;
        sim.at(secs(100));
        let first = p.decide(&sim.view());
        assert!(!first.is_empty(), "{states:?}");
        assert_eq!(p.decide(&sim.view()), [], "{states:?} after {first:?}");
        assert_eq!(p.decide(&sim.view()), [], "{states:?} after {first:?}");
        // Once applied, the next view goes on from there, without repeating itself.
        sim.apply(&first);
        let next = p.decide(&sim.view());
        assert!(
            next.iter().all(|a| !first.contains(a)),
            "{states:?}: {first:?} then {next:?}"
        );
    }
}

#[test]
fn a_lost_action_is_issued_again_on_a_later_view() {
    let mut sim = Sim::new(&[S::Stopped]);
    let mut p = policy(settings());
    sim.held = 1;
    assert_eq!(p.decide(&sim.view()), [Action::Start(0)]);
    // The shell did not apply it: a later view still shows the server stopped.
    sim.advance(SEC);
    assert_eq!(p.decide(&sim.view()), [Action::Start(0)]);
}

#[test]
fn a_replay_does_not_stop_a_server_drained_on_stale_counts() {
    let mut sim = Sim::new(&[S::Ready, S::Ready]);
    let mut p = policy(ScaleSettings {
        min_servers: 1,
        ..settings()
    });
    sim.at(secs(100)).load(0, 1);
    let view = sim.view();
    assert_eq!(p.decide(&view), [Action::Drain(1, R::Idle)]);
    assert_eq!(p.decide(&view), []);
}

#[test]
fn decisions_are_deterministic() {
    let run = || {
        let mut sim = Sim::new(&[S::Stopped; 4]);
        let mut p = policy(settings());
        let mut log = Vec::new();
        sim.held = 1;
        for t in 0..400u32 {
            let load = match t {
                0..=100 => t / 2,
                101..=200 => 50,
                _ => 3,
            };
            sim.held = usize::from(sim.count(S::Ready) == 0 && t < 200);
            log.push(sim.tick(&mut p, secs(3), load));
        }
        log
    };
    assert_eq!(run(), run());
}

// === whole-upstream simulations ===

#[test]
fn steady_load_does_not_flap() {
    for (target_rps, rps) in [(None, 0.0), (Some(100.0), 250.0)] {
        let mut sim = Sim::new(&[S::Ready, S::Stopped, S::Stopped, S::Stopped]);
        let mut p = policy(ScaleSettings {
            target_rps,
            ..settings()
        });
        sim.rps = rps;
        let mut last_action_at = 0;
        let mut actions = Vec::new();
        // Ten minutes at 2.5x target, one tick a second, starts taking 3 s.
        for t in 1..=600 {
            let a = sim.tick(&mut p, secs(3), 25);
            if !a.is_empty() {
                last_action_at = t;
                actions.extend(a);
            }
        }
        assert_eq!(actions, [Action::Start(1), Action::Start(2)], "{rps}");
        assert_eq!(last_action_at, 1);
        assert_eq!(sim.count(S::Ready), 3);
    }
}

#[test]
fn a_day_in_the_life() {
    let mut sim = Sim::new(&[S::Stopped; 4]);
    let mut p = policy(settings());
    // A request arrives: one start, the request is held until it is ready.
    sim.held = 1;
    assert_eq!(sim.tick(&mut p, secs(2), 0), [Action::Start(0)]);
    assert_eq!(sim.tick(&mut p, secs(2), 0), []);
    sim.held = 0;
    assert_eq!(sim.tick(&mut p, secs(2), 1), []);
    assert_eq!(sim.state(0), S::Ready);
    // A burst: sized at once.
    assert_eq!(
        sim.tick(&mut p, secs(2), 38),
        [Action::Start(1), Action::Start(2), Action::Start(3)]
    );
    for _ in 0..60 {
        assert_eq!(sim.tick(&mut p, secs(2), 38), []);
    }
    // Quiet but not silent: back to one server, one per 30 s.
    let quiet: Vec<_> = (0..200)
        .flat_map(|_| sim.tick(&mut p, secs(2), 2))
        .collect();
    assert_eq!(
        quiet,
        [
            Action::Drain(3, R::Load),
            Action::Stop(3, R::Load),
            Action::Drain(2, R::Load),
            Action::Stop(2, R::Load),
            Action::Drain(1, R::Load),
            Action::Stop(1, R::Load),
        ]
    );
    // Silence: the last one goes after idle_timeout.
    let start = sim.now;
    let mut silent = Vec::new();
    for _ in 0..120 {
        for a in sim.tick(&mut p, secs(2), 0) {
            silent.push((sim.now - start, a));
        }
    }
    assert_eq!(
        silent,
        [
            (secs(60), Action::Drain(0, R::Idle)),
            (secs(61), Action::Stop(0, R::Idle))
        ]
    );
    assert_eq!(sim.count(S::Stopped), 4);
}

/// Random worlds, checking what must hold whatever happens.
#[test]
fn invariants_hold_in_random_worlds() {
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }
    let mut rng = Lcg(7);
    let mut decisions = 0;
    // Starts, revivals, drains, undrains, stops: the worlds must exercise every kind.
    let mut seen = [0usize; 5];
    for _world in 0..400 {
        let n = 1 + rng.below(6) as usize;
        let states: Vec<S> = (0..n).map(|_| S::ALL[rng.below(6) as usize]).collect();
        let mut sim = Sim::new(&states);
        let min = rng.below(4) as usize;
        let mut p = policy(ScaleSettings {
            min_servers: min,
            max_servers: min + rng.below(4) as usize,
            target_in_flight: rng.below(20) as u32,
            target_rps: rng.chance(50).then(|| rng.below(200) as f64),
            idle_timeout: secs(rng.below(100)),
            scale_down_after: secs(rng.below(60)),
            revive_backoff: Backoff {
                base: secs(rng.below(3)),
                max: secs(10),
            },
        });
        for _step in 0..200 {
            sim.advance(Duration::from_millis(rng.below(5000)));
            for i in 0..n {
                if rng.chance(10) {
                    let event = Event::ALL[rng.below(11) as usize];
                    if transition::next(sim.state(i), event).is_ok() {
                        sim.event(i, event);
                        if event == Event::Drain && rng.chance(50) {
                            p.note_drained(i, R::ALL[rng.below(5) as usize]);
                        }
                    }
                }
                let busy = matches!(sim.state(i), S::Ready | S::Draining);
                if !busy || rng.chance(10) {
                    sim.servers[i].in_flight = 0;
                } else if rng.chance(20) {
                    let most = if rng.chance(50) { 4 } else { 40 };
                    sim.load(i, rng.below(most) as u32);
                }
            }
            sim.held = if rng.chance(85) {
                0
            } else {
                rng.below(50) as usize
            };
            sim.rps = rng.below(1000) as f64;

            let before = sim.servers.clone();
            let up = |s: &[ServerView]| {
                s.iter()
                    .filter(|s| matches!(s.state, S::Ready | S::Starting))
                    .count()
            };
            let ready = |s: &[ServerView]| s.iter().filter(|s| s.state == S::Ready).count();
            let actions = p.decide(&sim.view());
            decisions += 1;
            let mut touched = vec![false; n];
            for &a in &actions {
                let s = before[a.index()];
                assert!(
                    !touched[a.index()],
                    "two actions on one server: {actions:?}"
                );
                touched[a.index()] = true;
                assert!(
                    transition::next(s.state, a.event()).is_ok(),
                    "{a:?} on {:?}",
                    s.state
                );
                match a {
                    Action::Stop(..) => {
                        assert_eq!(s.in_flight, 0, "{a:?} with requests");
                        seen[4] += 1;
                    }
                    Action::Start(_) if s.state == S::Failed => {
                        assert_eq!(up(&before), 0, "revived with servers up: {before:?}");
                        assert!(before.iter().all(|s| s.state != S::Stopped));
                        seen[1] += 1;
                    }
                    Action::Start(_) => seen[0] += 1,
                    Action::Drain(..) => seen[2] += 1,
                    Action::Undrain(_) => seen[3] += 1,
                }
            }
            // The replay yields nothing.
            assert_eq!(p.decide(&sim.view()), [], "replay of {before:?}");
            sim.apply(&actions);
            let max = p.settings().max_servers;
            assert!(up(&sim.servers) <= max.max(up(&before)), "{actions:?}");
            assert!(
                ready(&sim.servers) >= min.min(ready(&before)),
                "drained below min: {actions:?}"
            );
        }
    }
    assert_eq!(decisions, 400 * 200);
    assert!(
        seen.iter().all(|&n| n >= 20),
        "too narrow a sample: {seen:?}"
    );
}

#[test]
fn stop_reasons_have_metric_names() {
    let names: Vec<_> = R::ALL.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        names,
        ["idle", "load", "failure", "manual", "shutdown", "reload"]
    );
}

#[test]
fn actions_name_their_server_and_event() {
    assert_eq!(Action::Start(3).index(), 3);
    assert_eq!(Action::Stop(2, R::Idle).event(), Event::StopIssued);
    assert_eq!(Action::Drain(1, R::Load).event(), Event::Drain);
    assert_eq!(Action::Undrain(0).event(), Event::Undrain);
    assert_eq!(Action::Start(0).event(), Event::StartIssued);
}

#[test]
fn settings_can_change_without_losing_timers() {
    let mut sim = Sim::new(&[S::Ready, S::Ready]);
    let mut p = policy(settings());
    for _ in 0..20 {
        assert_eq!(sim.tick(&mut p, SEC, 1), []);
    }
    p.set_settings(ScaleSettings {
        scale_down_after: secs(20),
        ..settings()
    });
    assert_eq!(p.settings().scale_down_after, secs(20));
    assert_eq!(sim.tick(&mut p, SEC, 1), [Action::Drain(1, R::Load)]);
}
