//! The proxy's shared state: routes to upstreams, their connection pools, and its settings.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rouse_config::ProxyConfig;
use rouse_state::{Changes, ServerId, Table, Upstream};
use rouse_tls::challenge::Challenges;
use rouse_tls::store::CertStore;
use tokio_util::task::TaskTracker;

use crate::access::AccessLog;
use crate::limits::HeadLimits;
use crate::pool::Pool;
use crate::router::Router;

/// The parts of `[proxy]` and `[log]` the data plane needs per request.
#[derive(Debug, Clone)]
pub struct Settings {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub client_idle_timeout: Duration,
    /// From accept, and from the end of the previous response, to a whole request head.
    pub client_header_timeout: Duration,
    pub client_body_timeout: Duration,
    pub send_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_server: usize,
    pub shutdown_timeout: Duration,
    /// Where request and response bodies spill beyond their memory part.
    pub temp_dir: Arc<Path>,
    /// A spliced (WebSocket) connection with no byte either way this long is closed.
    pub upgrade_idle_timeout: Option<Duration>,
    /// Client connections open at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// `None`: off, and nothing of it is computed per request.
    pub access_log: Option<Arc<AccessLog>>,
    /// `max_header_size`, `max_headers`.
    pub head: HeadLimits,
    /// `http2_max_concurrent_streams`: streams one HTTP/2 client may have open.
    pub http2_max_streams: usize,
    /// `http2_body_preread_size`: each HTTP/2 stream's receive window, and the connection's.
    pub http2_window: u32,
}

impl Settings {
    /// `access_log`: the default one (every request to stderr, `combined`); see
    /// [`Settings::with_access_log`] for `[log]`'s.
    pub fn new(proxy: &ProxyConfig, access_log: bool) -> Settings {
        let access_log = access_log
            .then(|| {
                crate::access::Sink::stderr()
                    .map_err(|e| tracing::warn!("no access log: {e}"))
                    .ok()
            })
            .flatten()
            .map(|sink| {
                let defaults = rouse_config::LogConfig {
                    format: rouse_config::LogFormat::Text,
                    access_log: true,
                    access_log_file: None,
                    access_log_format: rouse_config::AccessLogFormat::Combined,
                    access_log_status: Vec::new(),
                    access_log_sample: 1.0,
                    child_log_dir: None,
                };
                Arc::new(AccessLog::new(Arc::new(sink), &defaults))
            });
        Settings {
            connect_timeout: proxy.connect_timeout,
            read_timeout: proxy.read_timeout,
            client_idle_timeout: proxy.client_idle_timeout,
            client_header_timeout: proxy.client_header_timeout,
            client_body_timeout: proxy.client_body_timeout,
            send_timeout: proxy.send_timeout,
            pool_idle_timeout: proxy.pool_idle_timeout,
            pool_max_idle_per_server: proxy.pool_max_idle_per_server,
            shutdown_timeout: proxy.shutdown_timeout,
            temp_dir: Arc::from(proxy.temp_dir.as_path()),
            upgrade_idle_timeout: proxy.upgrade_idle_timeout,
            max_connections: proxy.max_connections,
            access_log,
            head: HeadLimits {
                max_header_size: proxy.max_header_size,
                max_headers: proxy.max_headers,
                underscores_in_headers: proxy.underscores_in_headers,
            },
            http2_max_streams: proxy.http2_max_concurrent_streams,
            http2_window: proxy.http2_body_preread_size,
        }
    }

    /// These settings with `[log]`'s access log (`None`: off).
    pub fn with_access_log(mut self, access_log: Option<Arc<AccessLog>>) -> Settings {
        self.access_log = access_log;
        self
    }
}

pub(crate) struct Routes {
    pub table: Arc<Table>,
    pub router: Router,
    pub upstreams: Vec<RouteUpstream>,
}

pub(crate) struct RouteUpstream {
    pub state: Arc<Upstream>,
    /// Indexed like `state.servers`.
    pub pools: Vec<Arc<Pool>>,
}

pub struct Proxy {
    pub(crate) routes: ArcSwap<Routes>,
    pub(crate) settings: Settings,
    /// Upgraded (WebSocket) connections, which outlive their request.
    pub(crate) upgrades: TaskTracker,
    /// ACME HTTP-01 answers, served before any routing.
    pub(crate) challenges: Arc<Challenges>,
    /// The certificates the TLS listeners serve, by SNI.
    pub(crate) certs: Arc<CertStore>,
}

impl Proxy {
    pub fn new(settings: Settings, table: &Arc<Table>) -> Arc<Proxy> {
        let routes = build_routes(&settings, table, &HashMap::new());
        Arc::new(Proxy {
            routes: ArcSwap::from_pointee(routes),
            settings,
            upgrades: TaskTracker::new(),
            challenges: Challenges::new(),
            certs: CertStore::new(),
        })
    }

    /// Switches to a reloaded table. The pools of the servers `changes` keeps are carried
    /// over, so warm connections survive; a replaced server's process is another one, whose
    /// connections start afresh.
    pub fn update(&self, table: &Arc<Table>, changes: &Changes) {
        let old = self.routes.load();
        let kept = changes.kept_ids();
        // By name, not a scan per server: 10,000 servers in 1,000 upstreams.
        let protocols: HashMap<&str, rouse_config::Protocol> = table
            .upstreams
            .iter()
            .map(|u| (u.name(), u.config.protocol))
            .collect();
        let mut keep = HashMap::new();
        for up in &old.upstreams {
            for (server, pool) in up.state.servers.iter().zip(&up.pools) {
                // A kept server of an upstream whose protocol changed needs new connections.
                let protocol = protocols.get(up.state.name()).copied();
                if kept.contains(&server.id()) && protocol == Some(pool.protocol()) {
                    keep.insert(server.id(), Arc::clone(pool));
                }
            }
        }
        self.routes
            .store(Arc::new(build_routes(&self.settings, table, &keep)));
    }

    /// Where ACME puts the HTTP-01 answers it waits to have fetched.
    pub fn challenges(&self) -> &Arc<Challenges> {
        &self.challenges
    }

    /// The certificates of the TLS listeners: `[[proxy.tls]]` files (swapped whole on reload)
    /// and ACME's.
    pub fn certs(&self) -> &Arc<CertStore> {
        &self.certs
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Closes idle upstream connections past their idle timeout; call now and then.
    pub fn evict_idle(&self) {
        let now = tokio::time::Instant::now();
        for up in &self.routes.load().upstreams {
            for pool in &up.pools {
                pool.evict_expired(now);
            }
        }
    }
}

fn build_routes(
    settings: &Settings,
    table: &Arc<Table>,
    keep: &HashMap<ServerId, Arc<Pool>>,
) -> Routes {
    let router = Router::new(
        table
            .upstreams
            .iter()
            .map(|u| (u.config.hosts.as_slice(), u.config.path_prefix.as_str())),
    );
    let upstreams = table
        .upstreams
        .iter()
        .map(|u| RouteUpstream {
            state: Arc::clone(u),
            pools: u
                .servers
                .iter()
                .map(|s| {
                    keep.get(&s.id()).cloned().unwrap_or_else(|| {
                        Arc::new(Pool::new(
                            crate::connect::Target::new(Arc::clone(s), u.tls.as_ref()),
                            u.config.protocol,
                            settings.pool_max_idle_per_server,
                            settings.pool_idle_timeout,
                        ))
                    })
                })
                .collect(),
        })
        .collect();
    Routes {
        table: Arc::clone(table),
        router,
        upstreams,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> rouse_config::Config {
        rouse_config::parse("t.toml", text).expect("valid")
    }

    const TWO: &str = "[[upstream]]\nname = \"e\"\n\
                       [[upstream.server]]\naddress = \"127.0.0.1:9101\"\ncommand = \"x\"\n\
                       [[upstream.server]]\naddress = \"127.0.0.1:9102\"\ncommand = \"x\"\n";

    fn pools(proxy: &Proxy) -> Vec<Arc<Pool>> {
        proxy.routes.load().upstreams[0].pools.clone()
    }

    /// A kept server keeps its pool wherever it moves; a server replaced on the same address
    /// is another process, whose connections start afresh.
    #[tokio::test]
    async fn kept_servers_keep_their_pools_and_replaced_ones_do_not() {
        let first = config(TWO);
        let table = Arc::new(Table::new(&first));
        let proxy = Proxy::new(Settings::new(&first.proxy, false), &table);
        let before = pools(&proxy);

        // :9101 gets a new command (replaced); :9102 moves to the front with a new weight.
        let text = "[[upstream]]\nname = \"e\"\n\
                    [[upstream.server]]\naddress = \"127.0.0.1:9102\"\ncommand = \"x\"\nweight = 2\n\
                    [[upstream.server]]\naddress = \"127.0.0.1:9101\"\ncommand = \"y\"\n";
        let next = table.reloaded(&config(text));
        let next_table = Arc::new(next.table);
        proxy.update(&next_table, &next.changes);
        let after = pools(&proxy);
        assert!(Arc::ptr_eq(&after[0], &before[1]), "kept, moved");
        assert!(!Arc::ptr_eq(&after[1], &before[0]), "replaced");
    }

    /// A kept server's connections speak the old protocol: a new one needs new connections.
    #[tokio::test]
    async fn a_new_protocol_gets_new_pools() {
        let first = config(TWO);
        let table = Arc::new(Table::new(&first));
        let proxy = Proxy::new(Settings::new(&first.proxy, false), &table);
        let before = pools(&proxy);
        let text = TWO.replace("name = \"e\"\n", "name = \"e\"\nprotocol = \"h2c\"\n");
        let next = table.reloaded(&config(&text));
        let next_table = Arc::new(next.table);
        proxy.update(&next_table, &next.changes);
        let after = pools(&proxy);
        for (a, b) in after.iter().zip(&before) {
            assert!(!Arc::ptr_eq(a, b));
            assert_eq!(a.protocol(), rouse_config::Protocol::H2c);
        }
    }
}
