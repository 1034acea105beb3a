//! A new table generation (reload): which servers go on, which are new, which retire.
//!
//! `Table::reloaded` decides what a server is, and says it in its [`Changes`]: a server it
//! kept keeps its [`ServerId`], so the loop moves its lifecycle to where the server now is.
//! Servers the changes retire (replaced, removed, or of a removed upstream) are fed
//! `Input::Retire`: drained while their requests finish (WebSockets included), stopped through
//! the supervisor that runs them, then forgotten by the loop and by that supervisor. A new
//! server on the address or program of one still retiring waits for it to be down.

use std::collections::HashSet;

use rouse_config::ServerAddress;
use rouse_state::Changes;

use super::*;

/// The addresses and programs of retiring servers that are not down yet.
#[derive(Default)]
pub(super) struct Busy {
    addresses: HashSet<ServerAddress>,
    programs: HashSet<(String, String)>,
}

impl Busy {
    pub(super) fn blocks(&self, s: &Server, life: &Life, driver: &str) -> bool {
        !self.addresses.is_empty()
            && life.lifecycle.state() == ServerState::Stopped
            && (self.addresses.contains(s.address())
                || self
                    .programs
                    .contains(&(driver.to_owned(), s.config.program.clone())))
    }
}

impl UpCtl {
    /// Where server `id` is in this entry.
    pub(super) fn position(&self, id: ServerId) -> Option<usize> {
        self.servers.iter().position(|s| s.id() == id)
    }
}

pub(super) fn same_driver(a: &Arc<dyn Supervisor>, b: &Arc<dyn Supervisor>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

impl Reconciler {
    /// Takes `table` as the current generation, which `changes` says how it differs from the
    /// current one (the first one, from an empty loop, with no changes).
    pub(super) fn set_table(&mut self, table: Arc<Table>, changes: &Changes, drivers: &Drivers) {
        let now = Instant::now();
        let old = std::mem::take(&mut self.ups);
        let kept = changes.kept_ids();
        let retired: HashSet<ServerId> = changes.retiring_servers().map(|s| s.id()).collect();
        // What goes on: lifecycles by server, policies by upstream name.
        let mut carried: HashMap<ServerId, Life> = HashMap::new();
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
                lives: Vec::new(),
                retiring: true,
                policy: ScalePolicy::new(up.policy.settings().clone()),
                meter: RateMeter::new(RATE_WINDOW),
                rps: 0.0,
                settings: up.settings,
                upstream: Arc::clone(&up.upstream),
            };
            for ((s, d), life) in up.servers.into_iter().zip(up.drivers).zip(up.lives) {
                if kept.contains(&s.id()) {
                    carried.insert(s.id(), life);
                } else {
                    // Every live server is either kept or retired by the diff; one it missed
                    // still retires, as the new table does not hold it.
                    debug_assert!(retired.contains(&s.id()), "the diff missed {}", s.id());
                    tracing::info!(
                        upstream = up.upstream.name(),
                        server = %s.address(),
                        state = %s.state(),
                        "server left the configuration (removed or changed): draining, then stopping it"
                    );
                    gone.servers.push(s);
                    gone.drivers.push(d);
                    gone.lives.push(life);
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
            let lives = upstream
                .servers
                .iter()
                .map(|s| {
                    carried.remove(&s.id()).unwrap_or_else(|| Life {
                        // A passive failure rings the table's `demand`, which the loop
                        // waits on: no relay per server.
                        lifecycle: Lifecycle::new(now),
                    })
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
                lives,
                policy,
                meter,
                rps: 0.0,
                retiring: false,
                settings: lifecycle_settings(upstream),
            });
        }
        let first_retiring = self.ups.len();
        self.ups.extend(retiring);
        self.table = table;
        self.rebuild();
        self.cluster_servers_changed();
        // An earlier deadline (a manual stop under way) stands: `Retire` keeps the sooner one.
        let by = rouse_core::time::deadline(now, self.table.retire_within);
        for u in first_retiring..self.ups.len() {
            for i in 0..self.ups[u].servers.len() {
                self.feed(u, i, Input::Retire { by }, now);
            }
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
            for (i, (s, d)) in up.servers.iter().zip(&up.drivers).enumerate() {
                self.ids.insert(s.id(), (u, i));
                let program = up.servers[i].config.program.clone();
                self.programs.insert((d.name().to_owned(), program), (u, i));
            }
        }
        // Per driver: its servers' specs, and their programs (a set: one driver may run
        // 10,000 programs, and a scan per server was quadratic).
        type Managed<'a> = (Vec<&'a rouse_config::ServerConfig>, HashSet<&'a str>);
        let mut drivers: Vec<(Arc<dyn Supervisor>, Managed<'_>)> = Vec::new();
        for up in self.ups.iter().rev() {
            for (s, d) in up.servers.iter().zip(&up.drivers) {
                let at = match drivers.iter().position(|(x, _)| same_driver(x, d)) {
                    Some(at) => at,
                    None => {
                        drivers.push((Arc::clone(d), Managed::default()));
                        drivers.len() - 1
                    }
                };
                let (servers, programs) = &mut drivers[at].1;
                // Retiring first (the loop runs backwards): its spec stays until it is down.
                if programs.insert(s.config.program.as_str()) {
                    servers.push(&s.config);
                }
            }
        }
        for (d, (servers, _)) in &drivers {
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
            for ((s, life), d) in up.servers.iter().zip(&up.lives).zip(&up.drivers) {
                if !life.lifecycle.is_down() {
                    busy.addresses.insert(s.address().clone());
                    busy.programs
                        .insert((d.name().to_owned(), s.config.program.clone()));
                }
            }
        }
        busy
    }

    /// Drops the retiring entries whose servers are all down.
    pub(super) fn forget_retired(&mut self) {
        let before = self.ups.len();
        self.ups
            .retain(|up| !(up.retiring && up.lives.iter().all(|l| l.lifecycle.is_down())));
        if self.ups.len() != before {
            self.rebuild();
        }
    }
}
