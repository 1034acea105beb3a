//! A running rouse: its listeners, its shared table, its data plane.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rouse_admin::AdminState;
use tokio_util::sync::CancellationToken;

use std::collections::HashMap;
use std::path::PathBuf;

use rouse_config::{Config, SupervisorRef};
use rouse_control::{Control, Drivers, Resolver};
use rouse_proxy::{Kind, Listener, Proxy, Settings};
use rouse_state::Table;
use rouse_tls::acme::Acme;
use rouse_tls::store::CertStore;

use crate::reload::{Reloader, Running};
pub use rouse_admin::ReloadRefused;
use rouse_supervisor::{Embedded, EmbeddedOptions, ProgramSpec, Supervisor, Supervisord};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Binds every listener of `[proxy]` (`listen`, `listen_tls`, `redirect_https`), before
/// anything else starts, so "address in use" is reported (exit 2) instead of half-starting.
/// The backlog is `listen_backlog`, as nginx's `listen ... backlog=` (tokio's own bind would
/// use a fixed one). Each listener carries its spec (`tcp:…`, `unix:…`, `tls:…`,
/// `redirect:…`; see `rouse_proxy::listen::specs`).
pub async fn bind_listeners(config: &Config) -> std::io::Result<Vec<Listener>> {
    rouse_proxy::listen::bind_all(&config.proxy)
}

/// How this rouse process runs its embedded children.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where the embedded supervisor records its process groups, so that a rouse that was
    /// killed leaves nothing behind once the next one starts.
    pub embedded_state_file: Option<PathBuf>,
    /// Children's output goes to `<dir>/<program>.log` instead of rouse's log.
    pub child_log_dir: Option<PathBuf>,
}

/// A rouse serving in the background of the current tokio runtime.
pub struct Rouse {
    control: Option<Control>,
    /// The current table generation; the admin API reads it on every request.
    table: Arc<ArcSwap<Table>>,
    reloader: Arc<Reloader>,
    admin_addr: Option<SocketAddr>,
    admin_stop: CancellationToken,
    admin_task: Option<JoinHandle<()>>,
    addrs: Vec<SocketAddr>,
    /// ACME's HTTP-01 answers, served by every plain and redirect listener.
    challenges: Arc<rouse_tls::challenge::Challenges>,
    /// Each listener's kind and TCP address (none for a unix socket), in spec order.
    bound: Vec<(Kind, Option<SocketAddr>)>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// Every certificate served, `[proxy.acme]`'s included.
    certs: Arc<CertStore>,
    acme: Option<Arc<Acme>>,
    /// Re-resolves host names in server addresses; aborted when rouse stops.
    resolving: JoinHandle<()>,
}

impl Rouse {
    /// Binds the listeners of `config` and starts serving.
    pub async fn start(config: Config) -> std::io::Result<Rouse> {
        Rouse::start_with(config, Options::default()).await
    }

    pub async fn start_with(config: Config, options: Options) -> std::io::Result<Rouse> {
        // A bad certificate file is a bad config: refused before anything is bound.
        if let Err(errors) = crate::certs::load(&config) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                errors.join("\n"),
            ));
        }
        let listeners = bind_listeners(&config).await?;
        let admin = match &config.admin {
            Some(a) => Some(TcpListener::bind(a.listen).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {} (admin): {e}", a.listen),
                )
            })?),
            None => None,
        };
        Ok(Rouse::with_listeners(config, listeners, admin, options).await)
    }

    pub async fn with_listeners(
        config: Config,
        listeners: Vec<Listener>,
        admin: Option<TcpListener>,
        options: Options,
    ) -> Rouse {
        let bound: Vec<(Kind, Option<SocketAddr>)> = listeners
            .iter()
            .map(|l| (l.spec.kind, l.local_addr()))
            .collect();
        let addrs = bound.iter().filter_map(|(_, a)| *a).collect();
        let table = Arc::new(Table::new(&config));
        // Names are resolved before anything connects: a start probe or a first request
        // finds their addresses (or a logged reason why there are none).
        let resolver = Resolver::new();
        resolver.pass(&table).await;
        let drivers = Drivers {
            embedded: embedded_driver(&config, &options).await,
            supervisord: supervisord_drivers(&config, None),
        };
        let control = Control::spawn(Arc::clone(&table), drivers.clone());
        let proxy = Proxy::new(Settings::new(&config.proxy, config.log.access_log), &table);
        match crate::certs::load(&config) {
            Ok(certs) => {
                for w in &certs.warnings {
                    tracing::warn!("{w}");
                }
                proxy.certs().set_files(certs.named);
            }
            // `start_with` refuses these; a caller that bound its own listeners is told here.
            Err(errors) => errors.iter().for_each(|e| tracing::error!("{e}")),
        }
        let challenges = Arc::clone(proxy.challenges());
        // The one store: the proxy's TLS listeners read it, ACME fills it.
        let certs = Arc::clone(proxy.certs());
        let acme = config.proxy.acme.as_ref().map(|acme| {
            Arc::new(Acme::start(
                acme,
                Arc::clone(proxy.challenges()),
                Arc::clone(&certs),
            ))
        });
        let admin_stop = CancellationToken::new();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(rouse_proxy::serve(Arc::clone(&proxy), listeners, async {
            let _ = rx.await;
        }));
        let table = Arc::new(ArcSwap::new(table));
        let resolving = Arc::clone(&resolver).spawn(Arc::clone(&table));
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
        let token = config.admin.as_ref().and_then(|a| a.token.clone());
        let hosts = config
            .admin
            .as_ref()
            .map_or_else(Vec::new, |a| a.hosts.clone());
        let reloader = Arc::new(Reloader::new(
            proxy,
            control.handle(),
            Arc::clone(&table),
            resolver,
            Running { config, drivers },
        ));
        if let Some(acme) = &acme {
            let acme = Arc::downgrade(acme);
            let _ = reloader.after_apply.set(Box::new(move || {
                if let Some(acme) = acme.upgrade() {
                    acme.check_now();
                }
            }));
        }
        let admin_task = admin.map(|listener| {
            let state = AdminState {
                table: Arc::clone(&table),
                control: control.handle(),
                token,
                hosts,
                reload: Some(reloader.hook()),
            };
            let stop = admin_stop.clone();
            tokio::spawn(rouse_admin::serve(listener, state, async move {
                stop.cancelled().await
            }))
        });
        Rouse {
            control: Some(control),
            table,
            reloader,
            admin_addr,
            admin_stop,
            admin_task,
            addrs,
            bound,
            challenges,
            shutdown: Some(tx),
            task: Some(task),
            certs,
            acme,
            resolving,
        }
    }

    /// Where ACME puts the HTTP-01 answers it waits to have fetched.
    pub fn challenges(&self) -> &Arc<rouse_tls::challenge::Challenges> {
        &self.challenges
    }

    /// The first bound TCP address of a kind of listener (`Kind::Tls` for `listen_tls`...).
    pub fn addr_of(&self, kind: Kind) -> Option<SocketAddr> {
        self.bound
            .iter()
            .find_map(|(k, a)| a.filter(|_| *k == kind))
    }

    /// The proxy's bound TCP addresses, in the order `listen`, `listen_tls`, `redirect_https`.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Every certificate rouse serves.
    pub fn cert_store(&self) -> Arc<CertStore> {
        Arc::clone(&self.certs)
    }

    /// What `[proxy.acme]` has done so far, when it is configured.
    pub fn acme_status(&self) -> Option<rouse_tls::acme::Status> {
        self.acme.as_ref().map(|acme| acme.status())
    }

    /// Where the admin API listens, when `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Applies a new, already validated config: see [`Reloader::apply`].
    pub async fn reload(&self, config: &Config) -> Vec<String> {
        self.reloader.apply(config).await.not_applied
    }

    /// Re-reads the file rouse was started from and applies it (SIGHUP, `POST /reload`).
    pub async fn reload_file(&self) -> Result<crate::Reloaded, ReloadRefused> {
        self.reloader.reload_file().await
    }

    /// Graceful shutdown: stop accepting, finish in-flight requests (bounded by
    /// `shutdown_timeout`), then stop embedded children, then return.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.admin_stop.cancel();
        if let Some(task) = self.admin_task.take() {
            let _ = task.await;
        }
        if let Some(acme) = self.acme.take() {
            acme.stop().await;
        }
        if let Some(control) = self.control.take() {
            control.shutdown().await;
        }
    }
}

impl Drop for Rouse {
    fn drop(&mut self) {
        self.resolving.abort();
        self.admin_stop.cancel();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The certificates every TLS listener serves, shared with `[proxy.acme]`.
/// One embedded supervisor for every upstream that names no supervisor. There is one even
/// when no upstream needs it yet: a reload may add some, and starting it cleans up what a
/// killed rouse left behind.
async fn embedded_driver(config: &Config, options: &Options) -> Option<Arc<Embedded>> {
    let programs: Vec<ProgramSpec> = config
        .upstreams
        .iter()
        .filter(|u| u.supervisor == SupervisorRef::Embedded)
        .flat_map(|u| u.servers.iter().filter_map(ProgramSpec::from_server))
        .collect();
    let opts = EmbeddedOptions {
        state_file: options.embedded_state_file.clone(),
        log_dir: options.child_log_dir.clone(),
        ..EmbeddedOptions::default()
    };
    // Cleaning up a crashed predecessor's children may block for a moment.
    tokio::task::spawn_blocking(move || Embedded::new(programs, opts))
        .await
        .ok()
}

/// One driver per `[supervisors.NAME]`, managing the programs of the servers that name it.
/// On reload, a supervisor whose section did not change keeps its driver (and its view of
/// supervisord's state).
pub(crate) fn supervisord_drivers(
    config: &Config,
    running: Option<&Running>,
) -> HashMap<String, Arc<dyn Supervisor>> {
    config
        .supervisors
        .values()
        .map(|sc| {
            if let Some(r) = running
                && r.config.supervisors.get(&sc.name) == Some(sc)
                && let Some(d) = r.drivers.supervisord.get(&sc.name)
            {
                return (sc.name.clone(), Arc::clone(d));
            }
            let mine = SupervisorRef::Supervisord(sc.name.clone());
            let programs = config
                .upstreams
                .iter()
                .flat_map(|u| &u.servers)
                .filter(|s| s.supervisor == mine)
                .map(|s| s.program.clone())
                .collect();
            let driver: Arc<dyn Supervisor> = Supervisord::new(sc, programs);
            (sc.name.clone(), driver)
        })
        .collect()
}
