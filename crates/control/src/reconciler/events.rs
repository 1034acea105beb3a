//! What the loop learns: task reports, supervisor process events, readiness, failures.

use super::*;

impl Reconciler {
    pub(super) fn on_msg(&mut self, msg: Msg) {
        let now = Instant::now();
        match msg {
            Msg::Manual {
                upstream,
                index,
                op,
                reply,
            } => {
                let _ = reply.send(self.manual(&upstream, index, op, now));
            }
            Msg::Reload {
                table,
                drivers,
                reply,
            } => {
                self.set_table(table, &drivers);
                let _ = reply.send(());
            }
            Msg::Started {
                id,
                generation,
                result,
            } => {
                let Some((u, i)) = self.locate(id, generation, Some(ServerState::Starting)) else {
                    return;
                };
                match result {
                    Err(e) => {
                        self.ups[u].ctls[i].nothing_to_stop = e.bad_name;
                        let failed = self.fail_start(u, i, e.why, now, true);
                        let sc = &mut self.ups[u].ctls[i];
                        sc.nothing_to_stop = false;
                        sc.failed_unreachable = failed && e.unreachable;
                    }
                    Ok(()) => self.spawn_probe(u, i, generation),
                }
            }
            Msg::Probed {
                id,
                generation,
                result,
            } => {
                let Some((u, i)) = self.locate(id, generation, Some(ServerState::Starting)) else {
                    return;
                };
                match result {
                    Ok(()) => self.ready(u, i, now),
                    // The requests held for it have waited about as long, and answer
                    // `start-timeout` themselves; those that came later keep waiting for the
                    // next attempt rather than fail on this one.
                    Err(NotReady::TimedOut(e)) => {
                        let t = self.ups[u].upstream.config.start_timeout;
                        let why = format!("not ready after {t:?}: {e}");
                        self.fail_start(u, i, why, now, false);
                    }
                    Err(NotReady::Died(e)) => {
                        self.fail_start(u, i, e, now, true);
                    }
                }
            }
            Msg::StopDone {
                id,
                generation,
                result,
            } => {
                let Some((u, i)) = self.locate(id, generation, None) else {
                    return;
                };
                self.ups[u].ctls[i].stopping_failed = false;
                if result.is_ok() {
                    // The supervisor answered: if it was unreachable at the start, it is back.
                    self.supervisor_answers(u, i, now);
                }
                let ctl = &mut self.ups[u];
                let s = Arc::clone(&ctl.servers[i]);
                if let Err(e) = &result {
                    tracing::error!(
                        upstream = ctl.upstream.name(),
                        server = %s.address(),
                        program = s.config.program,
                        "stop failed: {e}"
                    );
                }
                if s.state() == ServerState::Stopping {
                    self.set(u, i, Event::Stopped, now);
                    tracing::info!(
                        upstream = self.ups[u].upstream.name(),
                        server = %s.address(),
                        "server stopped"
                    );
                    self.note(u, i, "stopped", String::new());
                }
            }
            Msg::Checked {
                id,
                generation,
                result,
            } => {
                let Some(&(u, i)) = self.ids.get(&id) else {
                    return;
                };
                self.ups[u].ctls[i].checking = false;
                if self
                    .locate(id, generation, Some(ServerState::Ready))
                    .is_none()
                {
                    return;
                }
                let s = Arc::clone(&self.ups[u].servers[i]);
                match result {
                    Err(e) => self.fail(u, i, format!("refused connections ({e})"), now),
                    Ok(()) => {
                        tracing::info!(
                            upstream = self.ups[u].upstream.name(),
                            server = %s.address(),
                            "connect failures seen by the proxy were passing: it accepts connections"
                        );
                        s.forget_failures();
                        self.ups[u].upstream.notify_changed();
                    }
                }
            }
            Msg::Process(driver, info) => self.on_process(driver, info, now),
            Msg::PassiveFailure => {}
        }
    }

    pub(super) fn on_process(&mut self, driver: String, info: ProcessInfo, now: Instant) {
        let Some(&(u, i)) = self.programs.get(&(driver, info.program.clone())) else {
            return;
        };
        // Any report means the supervisor answers (again).
        self.supervisor_answers(u, i, now);
        let up = Arc::clone(&self.ups[u].upstream);
        let state = self.ups[u].servers[i].state();
        let retiring = self.ups[u].retiring;
        let sc = &mut self.ups[u].ctls[i];
        let sent = sc.start_sent.load(Ordering::Acquire);
        if sent && matches!(info.state, ProcessState::Starting | ProcessState::Running) {
            sc.previous_run = false;
        }
        // A BACKOFF shows the new process too (it failed to start and is being retried), but is
        // also an exit: it counts as one only once the new process has been seen otherwise.
        let stale = sc.previous_run;
        if sent && info.state == ProcessState::Backoff {
            sc.previous_run = false;
        }
        if stale {
            tracing::debug!(
                upstream = up.name(),
                program = info.program,
                state = %info.state,
                "ignoring a report about the previous process"
            );
            return;
        }
        let stopping_ours = sc.stopping_failed;
        match (state, info.state) {
            // Found running: at start-up (rouse restarted, supervisord kept its programs), or
            // started by hand. Adopted, not restarted: probed, then ready with the same pid.
            (ServerState::Stopped | ServerState::Failed, ProcessState::Running)
                if !stopping_ours && !retiring =>
            {
                self.adopt(u, i, &info, now)
            }
            (ServerState::Starting, ProcessState::Running)
                if up.config.ready == Readiness::Supervisor =>
            {
                self.ready(u, i, now)
            }
            // Stopped behind rouse's back (supervisorctl stop): not a failure, just gone.
            (
                ServerState::Ready | ServerState::Draining | ServerState::Starting,
                ProcessState::Stopped,
            ) => self.vanished(u, i, &info, now),
            (ServerState::Starting, ProcessState::Fatal | ProcessState::Exited) => {
                self.fail_start(u, i, info.description, now, true);
            }
            (
                ServerState::Ready | ServerState::Draining,
                ProcessState::Exited | ProcessState::Fatal | ProcessState::Backoff,
            ) => self.fail(
                u,
                i,
                format!("process {}: {}", info.state, info.description),
                now,
            ),
            _ => {}
        }
    }

    /// Server `i`'s supervisor answered. If the server failed because that supervisor could
    /// not be reached, its cool-down ends now: nothing was wrong with the server, and requests
    /// must not keep getting "unreachable" once the supervisor is back (they would: a request
    /// answered at once with the start error is never held, so it never asks for a new start).
    pub(super) fn supervisor_answers(&mut self, u: usize, i: usize, now: Instant) {
        let state = self.ups[u].servers[i].state();
        let sc = &mut self.ups[u].ctls[i];
        if !sc.failed_unreachable || sc.stopping_failed {
            return;
        }
        sc.failed_unreachable = false;
        if state != ServerState::Failed {
            return;
        }
        sc.failures = 0;
        tracing::info!(
            upstream = self.ups[u].upstream.name(),
            server = %self.ups[u].servers[i].address(),
            "its supervisor answers again: the server may start at once"
        );
        self.cooled_down(u, i, now);
    }

    /// A failed server may be started again: `stopped`, and the requests that come next wait
    /// for a new start instead of getting the last one's error.
    pub(super) fn cooled_down(&mut self, u: usize, i: usize, now: Instant) {
        if self.set(u, i, Event::StopIssued, now) {
            self.set(u, i, Event::Stopped, now);
        }
        let up = &self.ups[u].upstream;
        if up.start_error().is_some() {
            up.set_start_error(None);
        }
    }

    pub(super) fn vanished(&mut self, u: usize, i: usize, info: &ProcessInfo, now: Instant) {
        if !self.set(u, i, Event::VanishedStopped, now) {
            return;
        }
        let up = &self.ups[u].upstream;
        tracing::warn!(
            upstream = up.name(),
            server = %self.ups[u].servers[i].address(),
            program = info.program,
            "server stopped outside rouse"
        );
        self.note(u, i, "stopped", "outside rouse".to_owned());
        up.notify_changed();
    }

    pub(super) fn ready(&mut self, u: usize, i: usize, now: Instant) {
        let server = &self.ups[u].servers[i];
        if server.state() != ServerState::Starting {
            return;
        }
        // Before it is routable: refusals seen from a previous process must not keep the new
        // one out of rotation, nor have `reconcile` fail it again at once.
        server.forget_failures();
        if !self.set(u, i, Event::Ready, now) {
            return;
        }
        let ctl = &mut self.ups[u];
        let up = Arc::clone(&ctl.upstream);
        let sc = &mut ctl.ctls[i];
        sc.failures = 0;
        let took = sc.start_at.map(|t| now.saturating_duration_since(t));
        let adopted = sc.adopted;
        if let Some(d) = took.filter(|_| !adopted) {
            up.record_start_duration(d);
            self.table
                .metrics
                .start_duration
                .get_or_create(&Metrics::upstream(up.name()))
                .observe(d.as_secs_f64());
        }
        let ms = took.map(|d| d.as_secs_f64() * 1000.0).unwrap_or_default();
        self.count_start(u, i, if adopted { "adopted" } else { "ready" });
        self.note(
            u,
            i,
            if adopted { "adopt" } else { "ready" },
            format!("{ms:.1} ms"),
        );
        tracing::info!(
            upstream = up.name(),
            server = %self.ups[u].servers[i].address(),
            ms = took.map(|d| d.as_secs_f64() * 1000.0).unwrap_or_default(),
            "server ready"
        );
        // Also wakes every held request.
        up.set_start_error(None);
    }

    /// A start did not lead to a ready server. With `tell_held`, the requests held for the
    /// upstream get `why` at once when no other server is ready or starting.
    /// Whether it did (the server was `starting`).
    pub(super) fn fail_start(
        &mut self,
        u: usize,
        i: usize,
        why: String,
        now: Instant,
        tell_held: bool,
    ) -> bool {
        if !self.set(u, i, Event::StartFailed, now) {
            return false;
        }
        let up = Arc::clone(&self.ups[u].upstream);
        tracing::error!(
            upstream = up.name(),
            server = %self.ups[u].servers[i].address(),
            program = self.ups[u].servers[i].config.program,
            "cannot start server: {why}"
        );
        let result = if tell_held { "failed" } else { "timeout" };
        self.count_start(u, i, result);
        self.note(u, i, "start-failed", why.clone());
        self.after_failure(u, i);
        let none_coming = !self.ups[u]
            .servers
            .iter()
            .any(|s| matches!(s.state(), ServerState::Ready | ServerState::Starting));
        if none_coming && tell_held {
            up.set_start_error(Some(why));
        } else {
            up.notify_changed();
        }
        true
    }

    /// A server that was up stopped working.
    pub(super) fn fail(&mut self, u: usize, i: usize, why: String, now: Instant) {
        if !self.set(u, i, Event::Failed, now) {
            return;
        }
        let up = Arc::clone(&self.ups[u].upstream);
        tracing::warn!(
            upstream = up.name(),
            server = %self.ups[u].servers[i].address(),
            program = self.ups[u].servers[i].config.program,
            "server failed: {why}"
        );
        self.note(u, i, "failed", why.clone());
        self.after_failure(u, i);
        up.notify_changed();
    }

    /// ngx_supervisord 1.4: a failed server is stopped through its supervisor (so a half-alive
    /// process does not keep its port); it stays `failed` until it has cooled down.
    pub(super) fn after_failure(&mut self, u: usize, i: usize) {
        let sc = &mut self.ups[u].ctls[i];
        sc.failures = sc.failures.saturating_add(1);
        if std::mem::take(&mut sc.nothing_to_stop) {
            return;
        }
        sc.stopping_failed = true;
        self.count_stop(u, i, StopReason::Failure);
        self.spawn_stop(u, i);
    }
}
