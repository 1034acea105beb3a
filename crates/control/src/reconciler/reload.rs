//! A new table generation (reload): which servers go on, which are new, which retire.
//!
//! `Table::reloaded` decides what a server is: a server it carried over is the same object in
//! the new table, so the loop finds it by pointer and moves its memory (`ServerCtl`: attempt,
//! failures, pending stop) to where the server now is. Servers no upstream of the new table
//! holds retire: drained while their requests finish (WebSockets included), stopped through
//! the supervisor that runs them, then forgotten by the loop and by that supervisor. A new
//! server on the address or program of one still retiring waits for it to be down.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::*;

/// The addresses and programs of retiring servers that are not down yet.
#[derive(Default)]
pub(super) struct Busy {
    addresses: HashSet<SocketAddr>,
    programs: HashSet<(String, String)>,
}

impl Busy {
    pub(super) fn blocks(&self, s: &Server, driver: &str) -> bool {
        !self.addresses.is_empty()
            && s.state() == ServerState::Stopped
            && (self.addresses.contains(&s.address())
                || self
                    .programs
                    .contains(&(driver.to_owned(), s.config.program.clone())))
    }
}

impl UpCtl {
    /// Where the server with `ServerCtl::id` `id` is in this entry.
    pub(super) fn position(&self, id: usize) -> Option<usize> {
        self.ctls.iter().position(|c| c.id == id)
    }
}

/// A retiring server is down: nothing runs, and nothing is on its way to stop it.
fn down(s: &Server, c: &ServerCtl) -> bool {
    match s.state() {
        ServerState::Stopped => true,
        ServerState::Failed => !c.stopping_failed,
        _ => false,
    }
}

fn same_driver(a: &Arc<dyn Supervisor>, b: &Arc<dyn Supervisor>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

impl Reconciler {
    /// Takes `table` as the current generation (also the first one, from an empty loop).
    pub(super) fn set_table(&mut self, table: Arc<Table>, drivers: &Drivers) {
        let old = std::mem::take(&mut self.ups);
        let kept: HashSet<*const Server> = table
            .upstreams
            .iter()
            .flat_map(|u| u.servers.iter().map(Arc::as_ptr))
            .collect();
        // What goes on: servers by pointer, policies by upstream name.
        let mut carried: HashMap<*const Server, ServerCtl> = HashMap::new();
        let mut policies: HashMap<String, (Arc<Upstream>, ScalePolicy, RateMeter)> = HashMap::new();
        let mut retiring = Vec::new();
        for up in old {
            if up.retiring {
                retiring.push(up);
                continue;
            }
            let mut gone = UpCtl {
                servers: Vec::new(),
                drivers: Vec::new(),
                ctls: Vec::new(),
                retiring: true,
                policy: ScalePolicy::new(up.policy.settings().clone()),
                meter: RateMeter::new(RATE_WINDOW),
                rps: 0.0,
                upstream: Arc::clone(&up.upstream),
            };
            for ((s, d), c) in up.servers.into_iter().zip(up.drivers).zip(up.ctls) {
                if kept.contains(&Arc::as_ptr(&s)) {
                    carried.insert(Arc::as_ptr(&s), c);
                } else {
                    tracing::info!(
                        upstream = up.upstream.name(),
                        server = %s.address(),
                        state = %s.state(),
                        "server left the configuration (removed or changed): draining, then stopping it"
                    );
                    let mut c = c;
                    // An earlier deadline (a manual stop under way) stands.
                    c.drain_by
                        .get_or_insert(Instant::now() + table.retire_within);
                    gone.servers.push(s);
                    gone.drivers.push(d);
                    gone.ctls.push(c);
                }
            }
            if !gone.servers.is_empty() {
                retiring.push(gone);
            }
            policies.insert(
                up.upstream.name().to_owned(),
                (up.upstream, up.policy, up.meter),
            );
        }
        for upstream in &table.upstreams {
            // Each server's own supervisor: one upstream may span several supervisords.
            let Some(server_drivers) = upstream
                .servers
                .iter()
                .map(|s| drivers.for_server(&s.config.supervisor))
                .collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            let ctls = upstream
                .servers
                .iter()
                .map(|s| {
                    carried
                        .remove(&Arc::as_ptr(s))
                        .unwrap_or_else(|| self.new_ctl(s))
                })
                .collect();
            let revive = upstream.backoff;
            let (policy, meter) = match policies.remove(upstream.name()) {
                // Same upstream, or same name: the hysteresis and revival timers go on.
                Some((was, mut policy, meter)) => {
                    policy.set_settings(settings(&upstream.config, revive));
                    // The rate is measured over the servers' counters: a new set of servers
                    // starts a new measure.
                    let same = Arc::ptr_eq(&was, upstream);
                    (
                        policy,
                        if same {
                            meter
                        } else {
                            RateMeter::new(RATE_WINDOW)
                        },
                    )
                }
                None => (
                    ScalePolicy::new(settings(&upstream.config, revive)),
                    RateMeter::new(RATE_WINDOW),
                ),
            };
            self.ups.push(UpCtl {
                upstream: Arc::clone(upstream),
                servers: upstream.servers.clone(),
                drivers: server_drivers,
                ctls,
                policy,
                meter,
                rps: 0.0,
                retiring: false,
            });
        }
        self.ups.extend(retiring);
        self.table = table;
        self.rebuild();
    }

    fn new_ctl(&mut self, server: &Arc<Server>) -> ServerCtl {
        let id = self.next_id;
        self.next_id += 1;
        let relay = self.stop.child_token();
        tokio::spawn(forward_failures(
            Arc::clone(server),
            self.tx.clone(),
            relay.clone(),
        ));
        ServerCtl {
            id,
            _failures: relay.drop_guard(),
            generation: 0,
            start_at: None,
            failures: 0,
            stopping_failed: false,
            stop_done: None,
            previous_run: false,
            start_sent: Arc::default(),
            checking: false,
            drain_by: None,
            adopted: false,
            nothing_to_stop: false,
            failed_unreachable: false,
        }
    }

    /// After the entries changed: the lookup maps, what each supervisor manages, and the event
    /// relays.
    fn rebuild(&mut self) {
        self.ids.clear();
        self.programs.clear();
        // Retiring entries come last, so a program a retiring server and a new one share maps
        // to the retiring one (the one with a process) until it is down.
        for (u, up) in self.ups.iter().enumerate() {
            for (i, (c, d)) in up.ctls.iter().zip(&up.drivers).enumerate() {
                self.ids.insert(c.id, (u, i));
                let program = up.servers[i].config.program.clone();
                self.programs.insert((d.name().to_owned(), program), (u, i));
            }
        }
        let mut drivers: Vec<(Arc<dyn Supervisor>, Vec<&rouse_config::ServerConfig>)> = Vec::new();
        for up in self.ups.iter().rev() {
            for (s, d) in up.servers.iter().zip(&up.drivers) {
                let at = match drivers.iter().position(|(x, _)| same_driver(x, d)) {
                    Some(at) => at,
                    None => {
                        drivers.push((Arc::clone(d), Vec::new()));
                        drivers.len() - 1
                    }
                };
                let servers = &mut drivers[at].1;
                // Retiring first (the loop runs backwards): its spec stays until it is down.
                if !servers.iter().any(|c| c.program == s.config.program) {
                    servers.push(&s.config);
                }
            }
        }
        for (d, servers) in &drivers {
            d.manage(servers);
        }
        // Subscribe to new drivers; a driver that nothing uses any more is let go.
        self.forwarders
            .retain(|(f, _)| drivers.iter().any(|(d, _)| same_driver(d, f)));
        for (d, _) in drivers {
            if !self.forwarders.iter().any(|(f, _)| same_driver(f, &d)) {
                let relay = self.stop.child_token();
                tokio::spawn(forward_process_events(
                    Arc::clone(&d),
                    self.tx.clone(),
                    relay.clone(),
                ));
                self.forwarders.push((d, relay.drop_guard()));
            }
        }
    }

    /// The addresses and programs new servers must not take yet.
    pub(super) fn busy(&self) -> Busy {
        let mut busy = Busy::default();
        for up in self.ups.iter().filter(|u| u.retiring) {
            for ((s, c), d) in up.servers.iter().zip(&up.ctls).zip(&up.drivers) {
                if !down(s, c) {
                    busy.addresses.insert(s.address());
                    busy.programs
                        .insert((d.name().to_owned(), s.config.program.clone()));
                }
            }
        }
        busy
    }

    /// One step of retiring entry `u`'s servers: drain what serves, stop what has drained
    /// (as the policy's rule 1: only a server already draining before this step, so that a
    /// request routed to it just before the drain is counted), stop what is starting. A server
    /// still busy `retire_within` after the reload is stopped anyway (its `drain_by`).
    pub(super) fn retire(&mut self, u: usize, now: Instant) {
        for i in 0..self.ups[u].servers.len() {
            let s = Arc::clone(&self.ups[u].servers[i]);
            match s.state() {
                ServerState::Ready if self.set(u, i, Event::Drain, now) => {
                    self.note(u, i, "drain", StopReason::Reload.as_str().to_owned());
                }
                ServerState::Draining if s.in_flight() == 0 => {
                    self.stop(u, i, StopReason::Reload, now)
                }
                ServerState::Draining => self.stop_if_overdue(u, i, StopReason::Reload, now),
                ServerState::Starting => self.stop(u, i, StopReason::Reload, now),
                _ => {}
            }
        }
    }

    /// Drops the retiring entries whose servers are all down.
    pub(super) fn forget_retired(&mut self) {
        let before = self.ups.len();
        self.ups.retain(|up| {
            !(up.retiring && up.servers.iter().zip(&up.ctls).all(|(s, c)| down(s, c)))
        });
        if self.ups.len() != before {
            self.rebuild();
        }
    }
}
