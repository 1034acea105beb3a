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
use rouse_proxy::access::AccessLog;
use rouse_proxy::{Bound, Kind, Listener, Proxy, Settings};
use rouse_state::Table;
use rouse_tls::acme::Acme;
use rouse_tls::store::CertStore;

use std::os::fd::{AsFd, OwnedFd};

use crate::handed::StopsUntilHandover;
use crate::handover::{self, Inherited};
use crate::reload::{Reloader, Running};
use crate::serving::Serving;
use crate::upgrade::{Launch, UpgradeError, Upgrader};
pub use rouse_admin::ReloadRefused;
use rouse_admin::{UpgradeHook, UpgradeRefused};
use rouse_supervisor::{
    Embedded, EmbeddedOptions, HandedChild, ProgramSpec, Supervisor, Supervisord,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Binds every listener of `[proxy]` (`listen`, `listen_tls`, `redirect_https`), before
/// anything else starts, so "address in use" is reported (exit 2) instead of half-starting.
/// The backlog is `listen_backlog`, as nginx's `listen ... backlog=` (tokio's own bind would
/// use a fixed one). Each listener carries its spec (`tcp:…`, `unix:…`, `tls:…`,
/// `redirect:…`; see `rouse_proxy::listen::specs`).
pub async fn bind_listeners(config: &Config) -> std::io::Result<Vec<Listener>> {
    bind_listeners_from(config, &mut Inherited::default()).await
}

/// [`bind_listeners`], using the socket a previous rouse handed over for a listener of the
/// same spec (`rouse upgrade`), and binding the others.
pub async fn bind_listeners_from(
    config: &Config,
    inherited: &mut Inherited,
) -> std::io::Result<Vec<Listener>> {
    let specs = rouse_proxy::listen::specs(&config.proxy);
    let mut listeners = Vec::with_capacity(specs.len());
    for spec in specs {
        let l = match inherited.take(&spec.to_string()) {
            Some(fd) => handover::listener(&spec.to_string(), fd),
            None => rouse_proxy::listen::bind_spec(&spec, config.proxy.listen_backlog),
        }
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", spec.addr))
        })?;
        listeners.push(l);
    }
    Ok(listeners)
}

/// The admin API's listener, when `[admin]` is configured: inherited or bound.
pub async fn bind_admin(
    config: &Config,
    inherited: &mut Inherited,
) -> std::io::Result<Option<TcpListener>> {
    let Some(a) = &config.admin else {
        return Ok(None);
    };
    let bound = match inherited.take(&handover::admin_spec(&a.listen)) {
        Some(fd) => handover::tcp_listener(fd),
        None => TcpListener::bind(a.listen).await,
    };
    bound.map(Some).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {} (admin): {e}", a.listen),
        )
    })
}

/// How this rouse process runs its embedded children.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where the embedded supervisor records its process groups, so that a rouse that was
    /// killed leaves nothing behind once the next one starts.
    pub embedded_state_file: Option<PathBuf>,
    /// Children's output goes to `<dir>/<program>.log` instead of rouse's log.
    pub child_log_dir: Option<PathBuf>,
    /// How to start the next rouse for `rouse upgrade`; without it, upgrades are refused.
    pub launch: Option<Launch>,
    /// The data plane's runtimes (`[proxy] threads`); without, client connections are served
    /// on the runtime rouse runs on.
    pub workers: Option<Arc<rouse_proxy::Workers>>,
}

/// A rouse serving in the background of the current tokio runtime.
pub struct Rouse {
    control: Option<Control>,
    /// Set: one replica of a `[cluster]`.
    replica: Option<crate::cluster::Replica>,
    /// The current table generation; the admin API reads it on every request.
    table: Arc<ArcSwap<Table>>,
    reloader: Arc<Reloader>,
    admin_addr: Option<SocketAddr>,
    addrs: Vec<SocketAddr>,
    /// ACME's HTTP-01 answers, served by every plain and redirect listener.
    challenges: Arc<rouse_tls::challenge::Challenges>,
    /// Each listener's kind and TCP address (none for a unix socket), in spec order.
    bound: Vec<(Kind, Option<SocketAddr>)>,
    serving: Arc<Serving>,
    upgrader: Arc<Upgrader>,
    /// Every certificate served, `[proxy.acme]`'s included.
    certs: Arc<CertStore>,
    acme: Option<Arc<Acme>>,
    /// Re-resolves host names in server addresses; aborted when rouse stops.
    resolving: JoinHandle<()>,
    access_log: Option<Arc<AccessLog>>,
    /// The embedded supervisor (one for the process's life), whose children's log files
    /// SIGUSR1 reopens.
    embedded: Option<Arc<Embedded>>,
}

impl Rouse {
    /// Binds the listeners of `config` and starts serving.
    pub async fn start(config: Config) -> std::io::Result<Rouse> {
        Rouse::start_with(config, Options::default()).await
    }

    pub async fn start_with(config: Config, options: Options) -> std::io::Result<Rouse> {
        if let Some(why) = crate::cluster::unsupported(&config) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, why));
        }
        // A bad certificate file is a bad config: refused before anything is bound.
        let certs = crate::certs::load(&config).map_err(|errors| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, errors.join("\n"))
        })?;
        // An access log file rouse cannot write is a start refused, as nginx's is.
        if config.log.access_log
            && let Some(path) = &config.log.access_log_file
        {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("access log {}: {e}", path.display()))
                })?;
        }
        let listeners = bind_listeners(&config).await?;
        let admin = bind_admin(&config, &mut Inherited::default()).await?;
        Ok(Rouse::assemble(config, listeners, admin, options, None, Ok(certs)).await)
    }

    pub async fn with_listeners(
        config: Config,
        listeners: Vec<Listener>,
        admin: Option<TcpListener>,
        options: Options,
    ) -> Rouse {
        let certs = crate::certs::load(&config);
        Rouse::assemble(config, listeners, admin, options, None, certs).await
    }

    /// [`Rouse::with_listeners`] for the new process of `rouse upgrade`: the embedded
    /// supervisor adopts the children the old process handed over.
    pub async fn adopting(
        config: Config,
        listeners: Vec<Listener>,
        admin: Option<TcpListener>,
        options: Options,
        children: Vec<HandedChild>,
    ) -> Rouse {
        let certs = crate::certs::load(&config);
        Rouse::assemble(config, listeners, admin, options, Some(children), certs).await
    }

    async fn assemble(
        config: Config,
        listeners: Vec<Listener>,
        admin: Option<TcpListener>,
        options: Options,
        children: Option<Vec<HandedChild>>,
        certs: Result<crate::certs::Certificates, Vec<String>>,
    ) -> Rouse {
        let bound: Vec<(Kind, Option<SocketAddr>)> = listeners
            .iter()
            .map(|l| (l.spec.kind, l.local_addr()))
            .collect();
        let addrs = bound.iter().filter_map(|(_, a)| *a).collect();
        let sockets = handed_sockets(&config, &listeners, admin.as_ref());
        let table = Arc::new(Table::new(&config));
        // Names are resolved before anything connects: a start probe or a first request
        // finds their addresses (or a logged reason why there are none).
        let resolver = Resolver::new();
        resolver.pass(&table).await;
        let handed_over = CancellationToken::new();
        let drivers = Drivers {
            embedded: embedded_driver(&config, &options, children).await,
            supervisord: supervisord_drivers(&config, None, &handed_over),
        };
        let embedded = drivers.embedded.clone();
        let replica = crate::cluster::Replica::start(&config);
        let control = Control::spawn_clustered(
            Arc::clone(&table),
            drivers.clone(),
            replica.as_ref().map(|r| r.handle()),
        );
        let access_log = start_access_log(&config.log);
        let settings = Settings::new(&config.proxy, false).with_access_log(access_log.clone());
        let proxy = Proxy::new(settings, &table);
        match certs {
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
        let serving = Serving::new(Arc::clone(&proxy), options.workers.clone());
        let upgrader = Arc::new(Upgrader::new(
            options.launch.clone(),
            sockets,
            drivers.embedded.clone(),
            Arc::clone(&serving),
            handed_over,
        ));
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
            Running::new(config, drivers),
            Arc::clone(&upgrader),
        ));
        if let Some(acme) = &acme {
            let acme = Arc::downgrade(acme);
            let _ = reloader.after_apply.set(Box::new(move || {
                if let Some(acme) = acme.upgrade() {
                    acme.check_now();
                }
            }));
        }
        serving.set_admin(AdminState {
            table: Arc::clone(&table),
            control: control.handle(),
            token,
            hosts,
            reload: Some(reloader.hook()),
            upgrade: Some(upgrade_hook(&upgrader)),
            history: Default::default(),
            cluster: replica.as_ref().map(|r| r.handle()),
        });
        serving.serve(listeners, admin);
        Rouse {
            control: Some(control),
            replica,
            table,
            reloader,
            admin_addr,
            addrs,
            challenges,
            bound,
            serving,
            upgrader,
            certs,
            acme,
            resolving,
            access_log,
            embedded,
        }
    }

    /// Reopens the access log's file and the embedded children's (`child_log_dir`): SIGUSR1,
    /// after logrotate renamed them.
    pub fn reopen_logs(&self) {
        if let Some(log) = &self.access_log {
            log.sink().reopen();
        }
        if let Some(embedded) = &self.embedded {
            embedded.reopen_logs();
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

    /// `rouse upgrade`: a new rouse process takes over (see [`crate::upgrade`]); its pid.
    /// Once it has, [`Rouse::handed_over`] completes and [`Rouse::shutdown`] drains and
    /// leaves the children to it. The upgrade runs on a task of its own, so that a caller
    /// that gives up waiting does not cut it short.
    pub async fn upgrade(&self) -> Result<u32, UpgradeError> {
        spawn_upgrade(&self.upgrader).await
    }

    /// Cancelled once a new process has taken over from this one.
    pub fn handed_over(&self) -> CancellationToken {
        self.upgrader.handed_over()
    }

    /// Graceful shutdown: stop accepting, finish in-flight requests (bounded by
    /// `shutdown_timeout`), then stop embedded children (unless handed over to a new rouse),
    /// then return.
    pub async fn shutdown(mut self) {
        self.serving.shutdown().await;
        if let Some(log) = self.access_log.clone() {
            // The last requests' lines, before the process ends.
            let _ = tokio::task::spawn_blocking(move || {
                log.sink().flush(std::time::Duration::from_secs(5));
            })
            .await;
        }
        self.resolving.abort();
        if let Some(acme) = self.acme.take() {
            acme.stop().await;
        }
        if let Some(control) = self.control.take() {
            if self.upgrader.handed_over().is_cancelled() {
                // The children run on under the new rouse: nothing to stop, nor to count as
                // stopped; dropping the control plane just ends its loop.
                drop(control);
            } else {
                control.shutdown().await;
            }
        }
        if let Some(replica) = self.replica.take() {
            replica.leave().await;
        }
    }
}

impl Drop for Rouse {
    fn drop(&mut self) {
        self.resolving.abort();
        self.serving.stop_accepting();
    }
}

/// `[log]`'s access log; a file that cannot be opened (`start_with` refuses it earlier) falls
/// back to stderr rather than losing the lines.
fn start_access_log(log: &rouse_config::LogConfig) -> Option<Arc<AccessLog>> {
    match AccessLog::start(log) {
        Ok(l) => l.map(Arc::new),
        Err(e) => {
            tracing::error!("access log: {e}; logging to stderr instead");
            let stderr = rouse_config::LogConfig {
                access_log_file: None,
                ..log.clone()
            };
            AccessLog::start(&stderr).ok().flatten().map(Arc::new)
        }
    }
}

async fn spawn_upgrade(upgrader: &Arc<Upgrader>) -> Result<u32, UpgradeError> {
    let upgrader = Arc::clone(upgrader);
    tokio::spawn(async move { upgrader.upgrade().await })
        .await
        .map_err(|e| UpgradeError::Failed(format!("the upgrade task failed: {e}")))?
}

/// `POST /upgrade` for the admin API.
fn upgrade_hook(upgrader: &Arc<Upgrader>) -> UpgradeHook {
    let upgrader = Arc::downgrade(upgrader);
    Arc::new(move || {
        let upgrader = upgrader.clone();
        Box::pin(async move {
            let Some(upgrader) = upgrader.upgrade() else {
                return Err(UpgradeRefused::Unavailable("rouse is stopping".to_owned()));
            };
            spawn_upgrade(&upgrader).await.map_err(|e| match e {
                UpgradeError::Unavailable(why) => UpgradeRefused::Unavailable(why),
                UpgradeError::Failed(why) => UpgradeRefused::Failed(why),
            })
        })
    })
}

/// Duplicates of every listening socket, by spec, for a handover: the proxy's in spec order,
/// then the admin API's.
fn handed_sockets(
    config: &Config,
    listeners: &[Listener],
    admin: Option<&TcpListener>,
) -> Vec<(String, OwnedFd)> {
    let mut sockets = Vec::new();
    let mut keep = |spec: String, fd: std::io::Result<OwnedFd>| match fd {
        Ok(fd) => sockets.push((spec, fd)),
        Err(e) => tracing::warn!(listener = spec, %e, "cannot keep a listener for upgrades"),
    };
    for l in listeners {
        let fd = match &l.socket {
            Bound::Tcp(t) => t.as_fd().try_clone_to_owned(),
            Bound::Unix(u) => u.as_fd().try_clone_to_owned(),
        };
        keep(l.spec.to_string(), fd);
    }
    if let (Some(a), Some(l)) = (&config.admin, admin) {
        keep(
            handover::admin_spec(&a.listen),
            l.as_fd().try_clone_to_owned(),
        );
    }
    sockets
}

/// One embedded supervisor for every upstream that names no supervisor. There is one even
/// when no upstream needs it yet: a reload may add some, and starting it cleans up what a
/// killed rouse left behind.
async fn embedded_driver(
    config: &Config,
    options: &Options,
    children: Option<Vec<HandedChild>>,
) -> Option<Arc<Embedded>> {
    let programs: Vec<ProgramSpec> = config
        .upstreams
        .iter()
        .filter(|u| u.supervisor == SupervisorRef::Embedded)
        .flat_map(|u| u.servers.iter().filter_map(|s| ProgramSpec::from_server(s)))
        .collect();
    let opts = EmbeddedOptions {
        state_file: options.embedded_state_file.clone(),
        log_dir: options.child_log_dir.clone(),
        ..EmbeddedOptions::default()
    };
    // Cleaning up a crashed predecessor's children may block for a moment.
    tokio::task::spawn_blocking(move || match children {
        Some(children) => Embedded::adopting(programs, opts, children),
        None => Embedded::new(programs, opts),
    })
    .await
    .ok()
}

/// One driver per `[supervisors.NAME]`, managing the programs of the servers that name it.
/// On reload, a supervisor whose section did not change keeps its driver (and its view of
/// supervisord's state).
pub(crate) fn supervisord_drivers(
    config: &Config,
    running: Option<&Running>,
    handed_over: &CancellationToken,
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
            let driver =
                StopsUntilHandover::wrap(Supervisord::new(sc, programs), handed_over.clone());
            (sc.name.clone(), driver)
        })
        .collect()
}
