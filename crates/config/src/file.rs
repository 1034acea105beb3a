//! The file as written: serde types mirroring rouse.toml, before any meaning is given to values.
//!
//! Every key is optional here, even required ones: whether something is missing is decided by
//! validation, which can then report it together with every other problem instead of stopping
//! serde at the first one. Values that validation may have to point at keep their span.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, SeqAccess, Visitor};
use toml::Spanned;

use crate::duration::FileDuration;
use crate::size::FileSize;

/// One table of the file (`[proxy]`, one `[[upstream]]`, ...) read into `T`.
#[derive(Debug, Clone, Default)]
pub struct Section<T> {
    pub value: T,
    /// The table's header (`[proxy]`), or the whole inline table.
    pub span: Range<usize>,
    /// Where each key present in the table is written, for errors about the key itself
    /// ("not allowed here") rather than its value.
    pub keys: BTreeMap<String, Range<usize>>,
    /// Keys that were present but already reported as invalid: they read as absent, and
    /// validation must not report them missing or check other keys against their default.
    pub rejected: BTreeSet<String>,
}

impl<T> Section<T> {
    /// The key's own span, or the table's when the key is not there.
    pub fn key_span(&self, key: &str) -> Range<usize> {
        self.keys
            .get(key)
            .cloned()
            .unwrap_or_else(|| self.span.clone())
    }

    pub fn is_rejected(&self, key: &str) -> bool {
        self.rejected.contains(key)
    }
}

/// The whole document.
#[derive(Debug, Clone, Default)]
pub struct FileConfig {
    pub proxy: Option<Section<FileProxy>>,
    /// `[[proxy.tls]]`, in order (walked apart from `[proxy]`, like `[[upstream.server]]`).
    pub proxy_tls: Vec<Section<FileTls>>,
    /// `[proxy.acme]`, read on its own so each of its bad keys is reported.
    pub acme: Option<Section<FileAcme>>,
    pub admin: Option<Section<FileAdmin>>,
    pub log: Option<Section<FileLog>>,
    /// `[supervisors.NAME]`, by name: TOML tables do not keep the order of their keys.
    pub supervisors: Vec<FileSupervisorEntry>,
    pub upstreams: Vec<FileUpstreamEntry>,
    /// Where `upstream` is written, if it is: "at least one upstream" points there.
    pub upstream_key: Option<Range<usize>>,
    /// `upstream` was there but not an array of tables (already reported).
    pub upstream_rejected: bool,
    pub cluster: Option<Section<FileCluster>>,
}

#[derive(Debug, Clone)]
pub struct FileSupervisorEntry {
    pub name: Spanned<String>,
    pub section: Section<FileSupervisor>,
}

#[derive(Debug, Clone, Default)]
pub struct FileUpstreamEntry {
    pub section: Section<FileUpstream>,
    /// `[[upstream.server]]`, in order.
    pub servers: Vec<Section<FileServer>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileProxy {
    pub listen: Option<Spanned<Vec<Spanned<String>>>>,
    pub threads: Option<Spanned<usize>>,
    pub connect_timeout: Option<Spanned<FileDuration>>,
    pub read_timeout: Option<Spanned<FileDuration>>,
    pub client_idle_timeout: Option<Spanned<FileDuration>>,
    pub client_body_timeout: Option<Spanned<FileDuration>>,
    pub send_timeout: Option<Spanned<FileDuration>>,
    pub pool_idle_timeout: Option<Spanned<FileDuration>>,
    pub pool_max_idle_per_server: Option<Spanned<u64>>,
    pub shutdown_timeout: Option<Spanned<FileDuration>>,
    pub listen_backlog: Option<Spanned<u64>>,
    pub max_connections: Option<Spanned<u64>>,
    pub client_header_timeout: Option<Spanned<FileDuration>>,
    pub max_header_size: Option<Spanned<FileSize>>,
    pub max_headers: Option<Spanned<u64>>,
    pub underscores_in_headers: Option<bool>,
    pub http2_max_concurrent_streams: Option<Spanned<u64>>,
    pub http2_body_preread_size: Option<Spanned<FileSize>>,
    pub upgrade_idle_timeout: Option<Spanned<FileDuration>>,
    pub temp_dir: Option<Spanned<String>>,
    pub listen_tls: Option<Spanned<Vec<Spanned<String>>>>,
    pub redirect_https: Option<Spanned<Vec<Spanned<String>>>>,
}

/// One `[[proxy.tls]]` table: a certificate chain and its key, PEM files.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileTls {
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
}

/// `[proxy.acme]`: automatic certificates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileAcme {
    pub email: Option<Spanned<String>>,
    pub directory: Option<Spanned<String>>,
    pub domains: Option<Spanned<Vec<Spanned<String>>>>,
    pub dir: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub renew_before: Option<Spanned<FileDuration>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileAdmin {
    pub listen: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
    pub hosts: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileLogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileLog {
    pub format: Option<FileLogFormat>,
    pub access_log: Option<Spanned<FileAccessLog>>,
    pub access_log_format: Option<FileAccessLogFormat>,
    pub access_log_status: Option<Spanned<Vec<Spanned<String>>>>,
    pub access_log_sample: Option<Spanned<f64>>,
    pub child_log_dir: Option<String>,
}

/// `access_log`: on (stderr) or off, or the file it goes to.
#[derive(Debug, Clone, PartialEq)]
pub enum FileAccessLog {
    On(bool),
    Path(String),
}

impl<'de> Deserialize<'de> for FileAccessLog {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FileAccessLog;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a boolean, or the path of a file")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<FileAccessLog, E> {
                Ok(FileAccessLog::On(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FileAccessLog, E> {
                Ok(FileAccessLog::Path(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileAccessLogFormat {
    Combined,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileSupervisor {
    pub url: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub poll_interval: Option<Spanned<FileDuration>>,
    pub timeout: Option<Spanned<FileDuration>>,
}

/// `[cluster]`: replicas coordinated through etcd.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileCluster {
    pub etcd: Option<Spanned<Vec<Spanned<String>>>>,
    pub name: Option<Spanned<String>>,
    pub id: Option<Spanned<String>>,
    pub lease_ttl: Option<Spanned<FileDuration>>,
    pub timeout: Option<Spanned<FileDuration>>,
    pub user: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileBalance {
    Fair,
    RoundRobin,
}

/// `protocol`: how rouse speaks to an upstream's servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum FileProtocol {
    #[serde(rename = "http1")]
    Http1,
    #[serde(rename = "h2c")]
    H2c,
    #[serde(rename = "h2")]
    H2,
}

/// One `[[upstream]]` table, without its `server` array (read on its own, see `read`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileUpstream {
    pub name: Option<Spanned<String>>,
    pub hosts: Option<Vec<Spanned<String>>>,
    pub path_prefix: Option<Spanned<String>>,
    pub supervisor: Option<Spanned<String>>,
    pub supervisord_name: Option<Spanned<String>>,
    pub balance: Option<FileBalance>,
    pub min_servers: Option<Spanned<usize>>,
    pub max_servers: Option<Spanned<usize>>,
    pub target_in_flight: Option<Spanned<u32>>,
    pub target_rps: Option<Spanned<f64>>,
    pub idle_timeout: Option<Spanned<FileDuration>>,
    pub start_timeout: Option<Spanned<FileDuration>>,
    pub queue_limit: Option<Spanned<u64>>,
    pub ready: Option<Spanned<String>>,
    pub never_wake: Option<Vec<Spanned<String>>>,
    pub waiting_page: Option<bool>,
    pub slow_start: Option<Spanned<FileDuration>>,
    pub fail_timeout: Option<Spanned<FileDuration>>,
    pub fail_timeout_max: Option<Spanned<FileDuration>>,
    pub max_request_body: Option<Spanned<FileSize>>,
    pub request_buffering: Option<bool>,
    pub request_buffer_size: Option<Spanned<FileSize>>,
    pub response_buffering: Option<bool>,
    pub response_buffer_size: Option<Spanned<FileSize>>,
    pub max_response_buffer: Option<Spanned<FileSize>>,
    pub protocol: Option<Spanned<FileProtocol>>,
    pub resolve_interval: Option<Spanned<FileDuration>>,
    pub tls_ca_file: Option<Spanned<String>>,
    pub tls_verify: Option<bool>,
    pub tls_server_name: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileServer {
    pub address: Option<Spanned<String>>,
    pub tls: Option<bool>,
    pub weight: Option<Spanned<u32>>,
    pub max_conns: Option<Spanned<i64>>,
    pub program: Option<Spanned<String>>,
    pub supervisor: Option<Spanned<String>>,
    pub command: Option<Spanned<FileCommand>>,
    pub env: Option<Spanned<BTreeMap<String, String>>>,
    pub cwd: Option<Spanned<String>>,
    pub startsecs: Option<Spanned<FileDuration>>,
    pub stop_signal: Option<Spanned<String>>,
    pub stop_timeout: Option<Spanned<FileDuration>>,
}

/// `command`: a shell string or an argv array. Written by hand because serde's untagged enums
/// only say "did not match any variant", which tells the user nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCommand {
    Shell(String),
    Argv(Vec<String>),
}

impl<'de> Deserialize<'de> for FileCommand {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CommandVisitor)
    }
}

struct CommandVisitor;

impl<'de> Visitor<'de> for CommandVisitor {
    type Value = FileCommand;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a command string (run by /bin/sh) or an array of strings (argv)")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<FileCommand, E> {
        Ok(FileCommand::Shell(text.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FileCommand, A::Error> {
        let mut argv = Vec::new();
        while let Some(arg) = seq.next_element::<String>()? {
            argv.push(arg);
        }
        Ok(FileCommand::Argv(argv))
    }
}
