//! Runtime configuration: what the rest of rouse consumes, already validated.
//!
//! Everything here is plain data. Defaults are resolved (a server's `program`, an upstream's
//! `max_servers`), durations are `Duration`s and addresses are parsed, so no other crate ever
//! re-checks or re-interprets a config value.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use crate::address::{ServerAddress, TlsClientConfig};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this was read from, when there was one.
    pub source: Option<PathBuf>,
    pub proxy: ProxyConfig,
    pub admin: Option<AdminConfig>,
    pub log: LogConfig,
    /// `[supervisors.NAME]`, by name.
    pub supervisors: BTreeMap<String, SupervisordConfig>,
    pub upstreams: Vec<UpstreamConfig>,
    /// `[cluster]`: replicas coordinated through etcd; None: this rouse decides alone.
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`: several rouse replicas in front of the same supervisors, coordinated through
/// etcd (who leads, everyone's load, which servers are draining).
#[derive(Clone, PartialEq)]
pub struct ClusterConfig {
    /// etcd's client URLs (`http://` or `https://`), tried in turn.
    pub etcd: Vec<String>,
    /// The key prefix shared by the replicas of one service: `/rouse/NAME/`.
    pub name: String,
    /// This replica; None: the host name and the first listen address (`rouse-cluster`
    /// makes it, since reading the host name is not the config's job).
    pub id: Option<String>,
    /// The replica's etcd lease: a replica that stops refreshing it is gone after this long,
    /// and a leader that cannot refresh it stops deciding stops before it runs out
    /// (default 5s).
    pub lease_ttl: Duration,
    /// Each etcd call, connecting included (default 1s; always under a third of `lease_ttl`,
    /// so a slow keep-alive is still answered before the lease it renews is counted lost).
    pub timeout: Duration,
    /// etcd's user name and password (both or neither).
    pub user: Option<String>,
    pub password: Option<String>,
    /// The CA that signed the etcd servers' certificates (for `https://` endpoints; default:
    /// the web PKI roots).
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// Plain HTTP listeners: TCP addresses and unix sockets.
    pub listen: Vec<ListenAddr>,
    /// HTTPS listeners (ALPN h2 and http/1.1), with the certificates of `tls`.
    pub listen_tls: Vec<SocketAddr>,
    /// Plain listeners that answer every request with a 308 to `https://` (ACME HTTP-01
    /// challenges excepted).
    pub redirect_https: Vec<SocketAddr>,
    /// `[[proxy.tls]]`: certificates chosen by SNI, the first one for clients that name none
    /// of them.
    pub tls: Vec<TlsFiles>,
    /// Worker threads; 0 = one per core.
    pub threads: usize,
    /// TCP connect to a server (default 5s).
    pub connect_timeout: Duration,
    /// From request sent to response head received, and then between two reads of the
    /// response body (default 60s), as nginx's `proxy_read_timeout`.
    pub read_timeout: Duration,
    /// How long a client keep-alive connection may sit idle between requests (default 75s).
    pub client_idle_timeout: Duration,
    /// Between two reads of a request body from the client (default 60s), as nginx's
    /// `client_body_timeout`: a client that stops sending mid-upload gets 408.
    pub client_body_timeout: Duration,
    /// How long a client may leave rouse's writes to it blocked (it reads nothing) before its
    /// connection is closed (default 60s), as nginx's `send_timeout`.
    pub send_timeout: Duration,
    /// Pooled idle upstream connections are closed after this (default 50s; keep it below the
    /// backends' own keep-alive timeout).
    pub pool_idle_timeout: Duration,
    /// Most idle pooled connections kept per server (default 128).
    pub pool_max_idle_per_server: usize,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish (default 30s).
    pub shutdown_timeout: Duration,
    /// Pending connections the kernel queues per listener (default 511, as nginx; Linux caps
    /// it at net.core.somaxconn).
    pub listen_backlog: u32,
    /// Client connections open at once; beyond, new ones are accepted and closed at once
    /// (default 10000).
    pub max_connections: usize,
    /// From accept, and from the end of the previous response, to a whole request head
    /// (default 60s), as nginx's `client_header_timeout`.
    pub client_header_timeout: Duration,
    /// The whole request head, request line included (default 32 KiB); past it, 431.
    pub max_header_size: usize,
    /// Header fields in one request head (default 100); past it, 431.
    pub max_headers: usize,
    /// Request header fields whose name holds an underscore go to the servers (default
    /// false: they are dropped, as nginx's `underscores_in_headers off` drops them).
    pub underscores_in_headers: bool,
    /// Streams one HTTP/2 client may have open at once (default 512; nginx's
    /// `http2_max_concurrent_streams`, whose default is 128): SETTINGS_MAX_CONCURRENT_STREAMS.
    pub http2_max_concurrent_streams: usize,
    /// What an HTTP/2 client may send of each request body, and of all its streams together,
    /// before rouse asks for more (default 1 MiB; nginx's `http2_body_preread_size`, 64 KiB
    /// there): SETTINGS_INITIAL_WINDOW_SIZE and the connection's window.
    pub http2_body_preread_size: u32,
    /// An upgraded (WebSocket) connection with no byte either way for this long is closed
    /// (default: never).
    pub upgrade_idle_timeout: Option<Duration>,
    /// Where request and response bodies beyond their memory buffer are spooled (default: the
    /// system's temp directory).
    pub temp_dir: PathBuf,
    /// `[proxy.acme]`: certificates obtained and renewed automatically.
    pub acme: Option<AcmeConfig>,
}

/// Where the ACME directory of Let's Encrypt's production CA is.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// `[proxy.acme]`: one certificate for `domains`, obtained over HTTP-01 on the plain listeners
/// and renewed ahead of its expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeConfig {
    /// Contact address given to the CA (expiry and policy notices); none when not set.
    pub email: Option<String>,
    /// The ACME directory URL (default Let's Encrypt production).
    pub directory: String,
    /// DNS names, lower case, each once; the first names the files in `dir`.
    pub domains: Vec<String>,
    /// Where the account and the certificates are kept (default `/var/lib/rouse/acme`; a
    /// relative path is taken from the config file's directory).
    pub dir: PathBuf,
    /// PEM certificates trusted for the directory's HTTPS instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// A certificate is renewed this long before it expires (default 30 days).
    pub renew_before: Duration,
}

/// A `listen` entry: `IP:PORT` or `unix:/absolute/path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl std::str::FromStr for ListenAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<ListenAddr, String> {
        crate::values::listen_addr(text)
    }
}

/// One `[[proxy.tls]]` entry. Relative paths are resolved against the config file's
/// directory when it is loaded from a file (`load`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token: Option<String>,
    /// Host names (lower case, no port) accepted in requests besides the listen address and
    /// loopback names: anything else is refused, against DNS rebinding.
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `access_log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// nginx's `combined`, then rouse's own fields as `key=value`.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// One line per proxied request (default true).
    pub access_log: bool,
    /// Where those lines go: this file (reopened on SIGUSR1), or stderr when `None`.
    pub access_log_file: Option<PathBuf>,
    pub access_log_format: AccessLogFormat,
    /// Only answers with these statuses are logged (inclusive ranges); empty: all of them.
    pub access_log_status: Vec<(u16, u16)>,
    /// The fraction of answers under 400 that are logged (1.0: all); errors always are.
    pub access_log_sample: f64,
    /// Embedded children's output goes to `<dir>/<program>.log` instead of rouse's own log.
    pub child_log_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisordUrl {
    /// `http://host:port/path`
    Http {
        host: String,
        port: u16,
        path: String,
    },
    /// `unix:///run/supervisor.sock`
    Unix { path: PathBuf },
}

#[derive(Clone, PartialEq)]
pub struct SupervisordConfig {
    pub name: String,
    pub url: SupervisordUrl,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `https://` urls: TLS to supervisord, verified against the web PKI roots or `ca_file`.
    pub tls: Option<TlsClientConfig>,
    /// How often `getAllProcessInfo` is polled (default 1s).
    pub poll_interval: Duration,
    /// Timeout of one XML-RPC call (default 10s).
    pub timeout: Duration,
}

/// Who starts and stops an upstream's servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisorRef {
    /// `supervisor` omitted: rouse's own embedded supervisor runs `command`.
    Embedded,
    /// `supervisor = "none"`: static servers, never started or stopped by rouse.
    Static,
    /// `supervisor = "NAME"`: the `[supervisors.NAME]` supervisord.
    Supervisord(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Idle servers first, then fewest in-flight per weight, ties round robin.
    #[default]
    Fair,
    RoundRobin,
}

/// How rouse speaks to an upstream's servers (`protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// HTTP/1.1, a pool of keep-alive connections per server.
    #[default]
    Http1,
    /// HTTP/2 over plain TCP (prior knowledge): one multiplexed connection per server.
    H2c,
    /// HTTP/2 over TLS, chosen by ALPN; needs TLS server addresses.
    H2,
}

impl Protocol {
    /// The name the config file uses.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2c => "h2c",
            Protocol::H2 => "h2",
        }
    }

    /// Whether requests go to the servers as HTTP/2.
    pub fn is_http2(self) -> bool {
        !matches!(self, Protocol::Http1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// A TCP connect to the server's address succeeds.
    Tcp,
    /// `GET path` answers 2xx.
    Http { path: String },
    /// The supervisor says RUNNING (embedded: alive for `startsecs`).
    Supervisor,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    /// Lower-cased host names, without port; empty = the default upstream.
    pub hosts: Vec<String>,
    /// Starts with '/'; default "/".
    pub path_prefix: String,
    pub supervisor: SupervisorRef,
    /// Program-name prefix; default = upstream name.
    pub supervisord_name: String,
    pub balance: Balance,
    pub min_servers: usize,
    /// Default = number of servers.
    pub max_servers: usize,
    pub target_in_flight: u32,
    pub target_rps: Option<f64>,
    pub idle_timeout: Duration,
    pub start_timeout: Duration,
    pub queue_limit: usize,
    pub ready: Readiness,
    /// Path prefixes answered 503 when cold, without starting anything.
    pub never_wake: Vec<String>,
    /// Browsers (`Accept: text/html`) held for a cold start get a self-refreshing page.
    pub waiting_page: bool,
    /// A newly ready server's share ramps up over this long (default 5s; 0 = off).
    pub slow_start: Duration,
    /// Passive failure: how long a server whose connect failed is left out, the first time;
    /// doubled on each further failure up to `fail_timeout_max` (defaults 2s and 60s).
    pub fail_timeout: Duration,
    pub fail_timeout_max: Duration,
    /// Largest request body accepted (default 100 MiB; 0 = no limit); past it, 413.
    pub max_request_body: u64,
    /// Read the whole request body before choosing a server (default on).
    pub request_buffering: bool,
    /// Of a buffered request body, how much is kept in memory before spooling to a temp file
    /// (default 1 MiB).
    pub request_buffer_size: usize,
    /// Read responses from the server as fast as it sends, whatever the client's pace
    /// (default on).
    pub response_buffering: bool,
    /// Of a buffered response, how much is kept in memory before spooling (default 1 MiB).
    pub response_buffer_size: usize,
    /// Most of one response held (memory and temp file); at it, rouse reads from the server
    /// only as fast as the client reads (default 1 GiB).
    pub max_response_buffer: u64,
    /// To the servers: HTTP/1.1 (default), h2c or h2 (TLS).
    pub protocol: Protocol,
    /// Host names in server addresses are resolved again this often (default 30s).
    pub resolve_interval: Duration,
    /// Shared: the state table, the embedded driver and the routes each keep a server's
    /// config, and 10,000 servers' worth of copies was most of rouse's memory.
    pub servers: Vec<Arc<ServerConfig>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// Run by `/bin/sh -c`.
    Shell(Arc<str>),
    Argv(Arc<[String]>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// 0-based position in the upstream.
    pub index: usize,
    pub address: ServerAddress,
    /// TLS to this server (`https://` or `tls = true`), with its upstream's TLS settings.
    pub tls: Option<TlsClientConfig>,
    pub weight: u32,
    /// At most this many requests in flight on this server, WebSockets counted (nginx's
    /// `max_conns`); the rest wait, held, for room. 0 = no limit.
    pub max_conns: u32,
    /// supervisord program name; default `<supervisord_name><index>`.
    pub program: String,
    /// Who runs this server: the upstream's supervisor, or (supervisord upstreams only) the
    /// server's own `supervisor = "NAME"`, so one upstream can span several hosts.
    pub supervisor: SupervisorRef,
    /// Embedded supervisor only (required there).
    pub command: Option<CommandLine>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub startsecs: Duration,
    /// Signal name without "SIG", upper case, e.g. "TERM".
    pub stop_signal: String,
    pub stop_timeout: Duration,
}

impl Config {
    /// A copy that shares no allocation with `self` (`clone` shares the servers' configs and
    /// command lines). rouse parses each file in an allocator heap of its own and keeps this
    /// copy, made outside it, so that what it keeps is not scattered among the parse's freed
    /// temporaries (see `rouse::load`).
    pub fn unshared(&self) -> Config {
        let mut copy = self.clone();
        for up in &mut copy.upstreams {
            for server in &mut up.servers {
                let mut own = ServerConfig::clone(server);
                own.command = own.command.as_ref().map(CommandLine::unshared);
                *server = Arc::new(own);
            }
        }
        copy
    }
}

impl CommandLine {
    fn unshared(&self) -> CommandLine {
        match self {
            CommandLine::Shell(line) => CommandLine::Shell(Arc::from(&**line)),
            CommandLine::Argv(argv) => CommandLine::Argv(argv.iter().cloned().collect()),
        }
    }
}

impl SupervisordConfig {
    /// The url as written (scheme included, credentials never), for messages.
    pub fn shown_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        match &self.url {
            SupervisordUrl::Http { host, port, path } if host.contains(':') => {
                format!("{scheme}://[{host}]:{port}{path}")
            }
            SupervisordUrl::Http { host, port, path } => format!("{scheme}://{host}:{port}{path}"),
            SupervisordUrl::Unix { path } => format!("unix://{}", path.display()),
        }
    }
}

/// Shown in place of a secret by `Debug`: a config printed into a log must not carry it.
const HIDDEN: &str = "***";

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("etcd", &self.etcd)
            .field("name", &self.name)
            .field("id", &self.id)
            .field("lease_ttl", &self.lease_ttl)
            .field("timeout", &self.timeout)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| HIDDEN))
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| HIDDEN))
            .field("hosts", &self.hosts)
            .finish()
    }
}

impl std::fmt::Debug for SupervisordConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisordConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| HIDDEN))
            .field("tls", &self.tls)
            .field("poll_interval", &self.poll_interval)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unshared_copy_is_equal_and_shares_nothing() {
        let text = r#"
[[upstream]]
name = "app"
hosts = ["app.test"]
[[upstream.server]]
address = "127.0.0.1:9001"
command = ["python3", "-m", "http.server", "9001"]
[[upstream.server]]
address = "127.0.0.1:9002"
command = "python3 -m http.server 9002"
"#;
        let config = crate::parse("rouse.toml", text).expect("valid");
        let copy = config.unshared();
        assert_eq!(copy.upstreams, config.upstreams);
        let pairs = copy.upstreams[0]
            .servers
            .iter()
            .zip(&config.upstreams[0].servers);
        for (mine, theirs) in pairs {
            assert!(!Arc::ptr_eq(mine, theirs), "a server's config is shared");
            match (&mine.command, &theirs.command) {
                (Some(CommandLine::Argv(a)), Some(CommandLine::Argv(b))) => {
                    assert!(!Arc::ptr_eq(a, b), "an argv is shared")
                }
                (Some(CommandLine::Shell(a)), Some(CommandLine::Shell(b))) => {
                    assert!(!Arc::ptr_eq(a, b), "a shell line is shared")
                }
                other => panic!("commands differ: {other:?}"),
            }
        }
    }
}
