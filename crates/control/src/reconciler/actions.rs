//! Carrying decisions out: starting (after any stop of the same server), stopping, adopting,
//! and probing readiness. The slow part of each runs in a task that reports back as a `Msg`.

use super::*;

impl Reconciler {
    pub(super) fn start(&mut self, u: usize, i: usize, now: Instant) {
        if !self.set(u, i, Event::StartIssued, now) {
            return;
        }
        let ctl = &mut self.ups[u];
        let up = Arc::clone(&ctl.upstream);
        let server = Arc::clone(&ctl.servers[i]);
        let sc = &mut ctl.ctls[i];
        sc.generation += 1;
        sc.start_at = Some(now);
        sc.drain_by = None;
        sc.previous_run = true;
        sc.adopted = false;
        sc.failed_unreachable = false;
        let sent = Arc::new(AtomicBool::new(false));
        sc.start_sent = Arc::clone(&sent);
        let generation = sc.generation;
        let id = sc.id;
        let after_stop = sc.stop_done.clone();
        // Held requests now wait for this attempt rather than failing on the previous one.
        up.set_start_error(None);
        tracing::info!(
            upstream = up.name(),
            server = %server.address(),
            program = server.config.program,
            held = up.held(),
            "starting server"
        );
        self.note(u, i, "start", format!("{} held", up.held()));
        let ctl = &mut self.ups[u];
        let driver = Arc::clone(&ctl.drivers[i]);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            if let Some(stopped) = after_stop {
                // Bounded: a stop ends within stop_timeout plus the SIGKILL grace.
                stopped.cancelled().await;
            }
            sent.store(true, Ordering::Release);
            let result = driver
                .start(&server.config.program)
                .await
                .map_err(|e| StartFailure {
                    bad_name: matches!(e, SupervisorError::BadName { .. }),
                    unreachable: matches!(e, SupervisorError::Unreachable(_)),
                    why: e.to_string(),
                });
            let _ = tx.send(Msg::Started {
                id,
                generation,
                result,
            });
        });
    }

    pub(super) fn stop(&mut self, u: usize, i: usize, reason: StopReason, now: Instant) {
        if !self.set(u, i, Event::StopIssued, now) {
            return;
        }
        self.ups[u].ctls[i].drain_by = None;
        let ctl = &self.ups[u];
        let server = Arc::clone(&ctl.servers[i]);
        tracing::info!(
            upstream = ctl.upstream.name(),
            server = %server.address(),
            program = server.config.program,
            reason = reason.as_str(),
            "stopping server"
        );
        self.count_stop(u, i, reason);
        self.note(u, i, "stop", reason.as_str().to_owned());
        self.spawn_stop(u, i);
    }

    /// Stops server `i` if it is draining past its `drain_by` deadline (a WebSocket that stays
    /// open, a stuck request).
    pub(super) fn stop_if_overdue(&mut self, u: usize, i: usize, reason: StopReason, now: Instant) {
        let s = Arc::clone(&self.ups[u].servers[i]);
        if s.state() != ServerState::Draining
            || self.ups[u].ctls[i].drain_by.is_none_or(|by| now < by)
        {
            return;
        }
        tracing::warn!(
            upstream = self.ups[u].upstream.name(),
            server = %s.address(),
            in_flight = s.in_flight(),
            reason = reason.as_str(),
            "stopping a draining server still busy after shutdown_timeout"
        );
        self.stop(u, i, reason, now);
    }

    pub(super) fn spawn_stop(&mut self, u: usize, i: usize) {
        let ctl = &mut self.ups[u];
        let server = Arc::clone(&ctl.servers[i]);
        let generation = ctl.ctls[i].generation;
        let id = ctl.ctls[i].id;
        let driver = Arc::clone(&ctl.drivers[i]);
        let tx = self.tx.clone();
        let done = CancellationToken::new();
        ctl.ctls[i].stop_done = Some(done.clone());
        tokio::spawn(async move {
            // Whatever way the task ends, a start waiting for this stop goes on.
            let _done = done.drop_guard();
            let result = driver
                .stop(&server.config.program)
                .await
                .map_err(|e| e.to_string());
            let _ = tx.send(Msg::StopDone {
                id,
                generation,
                result,
            });
        });
    }

    pub(super) fn adopt(&mut self, u: usize, i: usize, info: &ProcessInfo, now: Instant) {
        if !self.set(u, i, Event::StartIssued, now) {
            return;
        }
        let ctl = &mut self.ups[u];
        let sc = &mut ctl.ctls[i];
        sc.generation += 1;
        sc.start_at = Some(now);
        sc.drain_by = None;
        sc.previous_run = false;
        // The process reported is the one adopted: nothing of ours is on its way.
        sc.start_sent = Arc::new(AtomicBool::new(true));
        sc.adopted = true;
        let generation = sc.generation;
        tracing::info!(
            upstream = ctl.upstream.name(),
            server = %ctl.servers[i].address(),
            program = info.program,
            pid = info.pid,
            "adopting a running program"
        );
        self.spawn_probe(u, i, generation);
    }

    /// The data plane could not connect to ready server `i`. A connect that timed out under a
    /// burst (a SYN dropped by a busy listener) says little about the process, while stopping it
    /// costs every request in flight on it: one connect of the loop's own decides. Refused means
    /// down, and the server fails at once; accepted means it stays (back in rotation).
    pub(super) fn check(&mut self, u: usize, i: usize) {
        let ctl = &mut self.ups[u];
        let addr = ctl.servers[i].address();
        let sc = &mut ctl.ctls[i];
        sc.checking = true;
        let (id, generation) = (sc.id, sc.generation);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = probe::accepts(addr).await;
            let _ = tx.send(Msg::Checked {
                id,
                generation,
                result,
            });
        });
    }

    pub(super) fn spawn_probe(&self, u: usize, i: usize, generation: u64) {
        let ctl = &self.ups[u];
        let up = Arc::clone(&ctl.upstream);
        let server = Arc::clone(&ctl.servers[i]);
        let id = ctl.ctls[i].id;
        let deadline = ctl.ctls[i].start_at.unwrap_or_else(Instant::now) + up.config.start_timeout;
        let driver = Arc::clone(&ctl.drivers[i]);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = match &up.config.ready {
                Readiness::Supervisor => until_running(&*driver, &server, deadline).await,
                r => probe::until_ready(server.address(), r, deadline)
                    .await
                    .map_err(NotReady::TimedOut),
            };
            let _ = tx.send(Msg::Probed {
                id,
                generation,
                result,
            });
        });
    }
}

/// For `ready = "supervisor"`: polls the supervisor until the program is RUNNING.
async fn until_running(
    driver: &dyn Supervisor,
    server: &Server,
    deadline: Instant,
) -> Result<(), NotReady> {
    let program = &server.config.program;
    loop {
        match driver.observe().await {
            Ok(infos) => {
                if let Some(p) = infos.iter().find(|p| &p.program == program) {
                    match p.state {
                        ProcessState::Running => return Ok(()),
                        ProcessState::Fatal | ProcessState::Exited => {
                            return Err(NotReady::Died(format!("{}: {}", p.state, p.description)));
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => tracing::debug!("observe failed: {e}"),
        }
        if Instant::now() + OBSERVE_INTERVAL >= deadline {
            return Err(NotReady::TimedOut(format!("{program} not RUNNING in time")));
        }
        tokio::time::sleep(OBSERVE_INTERVAL).await;
    }
}
