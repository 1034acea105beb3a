//! Reloading a running rouse: SIGHUP, `POST /reload`, and `Rouse::reload` in tests all come
//! here, one at a time.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rouse_admin::{ReloadHook, ReloadRefused};
use rouse_config::Config;
use rouse_control::{ControlHandle, Drivers, Resolver};
use rouse_proxy::Proxy;
use rouse_state::{Changes, Table};

use crate::app::supervisord_drivers;
use crate::online;
use crate::upgrade::Upgrader;

/// How long a reload waits for the supervisords to say whether they know the new config's
/// programs. The check runs before the reload is answered, so that whoever ran `rouse reload`
/// sees the warnings where they look, not only in the log: a supervisord that answers does so
/// in milliseconds, and this bound keeps an unreachable one from holding up the answer (and
/// SIGHUP's loop) for its whole `timeout`. The reload itself is applied before the check.
const PROGRAM_CHECK_BOUND: Duration = Duration::from_secs(2);

/// What a reload of the file did.
#[derive(Debug, Clone, Default)]
pub struct Reloaded {
    /// What changed, upstream by upstream (see `Table::reloaded`).
    pub changes: Arc<Changes>,
    /// Sections that changed but keep their running values until a restart.
    pub not_applied: Vec<String>,
    /// The pid of the new rouse process that took over to apply `[proxy]`, `[log]`,
    /// `[admin]` or `[cluster]` changes (see [`crate::upgrade`]).
    pub upgraded: Option<u32>,
    /// Programs the supervisords do not know, and supervisords that could not be asked.
    pub warnings: Vec<String>,
}

/// The config and the drivers that run now.
pub(crate) struct Running {
    /// Without its upstreams: the table holds them, and a reload compares sections and
    /// supervisors only (10,000 servers' configs are megabytes).
    pub config: Config,
    pub drivers: Drivers,
}

impl Running {
    pub fn new(mut config: Config, drivers: Drivers) -> Running {
        config.upstreams = Vec::new();
        Running { config, drivers }
    }
}

pub(crate) struct Reloader {
    proxy: Arc<Proxy>,
    control: ControlHandle,
    table: Arc<ArcSwap<Table>>,
    /// Host names new servers bring are resolved before they are used.
    resolver: Arc<Resolver>,
    /// The lock also serializes reloads.
    running: tokio::sync::Mutex<Running>,
    /// Applies what needs a new process: listeners, timeouts, logging.
    upgrader: Arc<Upgrader>,
    /// Run after each reload is applied (ACME looks at its certificate again).
    pub(crate) after_apply: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl Reloader {
    pub fn new(
        proxy: Arc<Proxy>,
        control: ControlHandle,
        table: Arc<ArcSwap<Table>>,
        resolver: Arc<Resolver>,
        running: Running,
        upgrader: Arc<Upgrader>,
    ) -> Reloader {
        Reloader {
            proxy,
            control,
            table,
            resolver,
            running: tokio::sync::Mutex::new(running),
            upgrader,
            after_apply: std::sync::OnceLock::new(),
        }
    }

    /// `POST /reload` for the admin API.
    pub fn hook(self: &Arc<Self>) -> ReloadHook {
        let this = Arc::downgrade(self);
        Arc::new(move || {
            let this = this.clone();
            Box::pin(async move {
                let Some(this) = this.upgrade() else {
                    return Err(ReloadRefused::Invalid(vec!["rouse is stopping".to_owned()]));
                };
                this.reload_file().await.map(|done| {
                    let mut message = if let Some(pid) = done.upgraded {
                        format!(
                            "configuration reloaded; a new rouse process (pid {pid}) took over to apply {}, and this one finishes its requests and exits",
                            done.not_applied.join(", ")
                        )
                    } else if done.not_applied.is_empty() {
                        "configuration reloaded".to_owned()
                    } else {
                        format!(
                            "configuration reloaded; changes to {} wait for a restart",
                            done.not_applied.join(", ")
                        )
                    };
                    message.push('\n');
                    message.push_str(&done.changes.to_string());
                    for w in &done.warnings {
                        message.push_str("\nwarning: ");
                        message.push_str(w);
                    }
                    message
                })
            })
        })
    }

    /// Re-reads the file the running config came from, validates it whole, and applies it;
    /// then asks the supervisords whether they know its programs (bounded, see
    /// [`PROGRAM_CHECK_BOUND`]).
    pub async fn reload_file(&self) -> Result<Reloaded, ReloadRefused> {
        // systemd (Type=notify-reload waits for these) and `systemctl status` are told.
        crate::notify::reloading("reloading the configuration");
        let result = self.read_and_apply().await;
        crate::notify::reloaded(&match &result {
            Ok(done) => match done.upgraded {
                Some(pid) => format!("configuration reloaded; rouse pid {pid} took over"),
                None => "serving; configuration reloaded".to_owned(),
            },
            Err(ReloadRefused::Invalid(lines)) => format!(
                "serving the previous configuration: reload refused: {}",
                lines.first().map_or("", String::as_str)
            ),
            Err(ReloadRefused::NoFile) => "serving; nothing to reload".to_owned(),
        });
        result
    }

    async fn read_and_apply(&self) -> Result<Reloaded, ReloadRefused> {
        let Some(path) = self.running.lock().await.config.source.clone() else {
            return Err(ReloadRefused::NoFile);
        };
        let config = crate::load::load_async(&path).await.map_err(|errors| {
            let lines: Vec<String> = errors.errors.iter().map(|e| e.to_string()).collect();
            for line in &lines {
                tracing::error!("reload refused, keeping the running configuration: {line}");
            }
            ReloadRefused::Invalid(lines)
        })?;
        // Every certificate file is read before anything changes: one bad file refuses the
        // whole reload, and the running certificates stay.
        let certs = crate::certs::load(&config).map_err(|lines| {
            for line in &lines {
                tracing::error!("reload refused, keeping the running configuration: {line}");
            }
            ReloadRefused::Invalid(lines)
        })?;
        let mut done = self.apply(&config).await;
        // New handshakes get the new certificates; connections open keep theirs.
        self.proxy.certs().set_files(certs.named);
        for w in &certs.warnings {
            tracing::warn!("{w}");
        }
        tracing::info!(file = %path.display(), "configuration reloaded");
        let mut warnings = certs.warnings;
        if !done.not_applied.is_empty() && self.upgrader.available() {
            // The new process reads the same file, and runs all of it.
            tracing::info!(
                sections = done.not_applied.join(", "),
                "these sections changed: handing over to a new rouse process that runs them"
            );
            let upgrader = Arc::clone(&self.upgrader);
            match tokio::spawn(async move { upgrader.upgrade().await }).await {
                Ok(Ok(pid)) => done.upgraded = Some(pid),
                Ok(Err(e)) => warnings.push(format!(
                    "{} keep their running values: starting a new rouse to apply them failed: {e}",
                    done.not_applied.join(", ")
                )),
                Err(e) => warnings.push(format!("the upgrade task failed: {e}")),
            }
        }
        for line in done.changes.to_string().lines() {
            tracing::info!("reload: {line}");
        }
        if !done.not_applied.is_empty() && done.upgraded.is_none() {
            tracing::warn!(
                sections = done.not_applied.join(", "),
                "these sections changed and keep their running values until rouse restarts"
            );
        }
        let findings = online::check_programs(&config, Some(PROGRAM_CHECK_BOUND)).await;
        for u in &findings.unknown {
            tracing::warn!(file = %path.display(), "{u}; starting it will fail");
        }
        for u in &findings.unanswered {
            tracing::warn!("after the reload, {u}");
        }
        warnings.extend(
            findings
                .unknown
                .iter()
                .map(|u| format!("{}: {u}", path.display()))
                .chain(findings.unanswered.iter().map(ToString::to_string)),
        );
        drop(config);
        // The parse's burst is freed: hand it back, or each reload of a large file leaves RSS
        // higher (rouse-alloc says why).
        rouse_alloc::release_free_memory();
        Ok(Reloaded { warnings, ..done })
    }

    /// Applies a new, already validated config: upstreams, servers and supervisors are added,
    /// changed and removed by diff (see `Table::reloaded`), with no request lost. Returns what
    /// changed, and what it could not apply (listeners, timeouts, logging: they need a new
    /// process, which `reload_file` starts when it can); no warnings, which only
    /// `reload_file` looks for.
    pub async fn apply(&self, config: &Config) -> Reloaded {
        let mut running = self.running.lock().await;
        let mut not_applied = Vec::new();
        let mut applied = config.clone();
        // `[[proxy.tls]]` is applied (its files are read by `reload_file`); the rest of
        // `[proxy]`, listeners included, waits for a restart.
        let mut proxy = config.proxy.clone();
        proxy.tls = running.config.proxy.tls.clone();
        if proxy != running.config.proxy {
            not_applied.push("[proxy]".to_owned());
            applied.proxy = running.config.proxy.clone();
            applied.proxy.tls = config.proxy.tls.clone();
        }
        if config.admin != running.config.admin {
            not_applied.push("[admin]".to_owned());
            applied.admin = running.config.admin.clone();
        }
        if config.log != running.config.log {
            not_applied.push("[log]".to_owned());
            applied.log = running.config.log.clone();
        }
        // The etcd session (lease, membership, leadership) is the process's: a new process
        // joins with the new settings as the old one leaves, as for [admin]'s listener.
        if config.cluster != running.config.cluster {
            not_applied.push("[cluster]".to_owned());
            applied.cluster = running.config.cluster.clone();
        }
        let drivers = Drivers {
            embedded: running.drivers.embedded.clone(),
            supervisord: supervisord_drivers(
                &applied,
                Some(&*running),
                &self.upgrader.handed_over(),
            ),
        };
        let old = self.table.load_full();
        // `applied`: a `[proxy]` change (shutdown_timeout, which bounds drains) waits for a
        // restart like the rest of that section.
        let next = old.reloaded(&applied);
        let (table, changes) = (Arc::new(next.table), Arc::new(next.changes));
        self.resolver.pass(&table).await;
        // The control plane first, so that requests the data plane sends to new servers from
        // the next line on find them managed.
        self.control
            .reload(Arc::clone(&table), Arc::clone(&changes), drivers.clone())
            .await;
        self.proxy.update(&table, &changes);
        self.table.store(Arc::clone(&table));
        // Requests held for an upstream that was replaced go on with its successor (those of
        // a removed one are told it was removed).
        for up in changes.retiring_upstreams() {
            up.retire();
        }
        *running = Running::new(applied, drivers);
        if let Some(after) = self.after_apply.get() {
            after();
        }
        Reloaded {
            changes,
            not_applied,
            upgraded: None,
            warnings: Vec::new(),
        }
    }
}
