//! `FileConfig` → `model::Config`: defaults, meaning and every rule of the format.
//!
//! Validation never stops at a problem: a bad value is reported and replaced by a placeholder so
//! the remaining checks still run, and the caller throws the result away if anything was
//! reported. Placeholders are never seen outside this crate.

mod access_log;
mod acme;
mod cluster;
mod connect;
mod cross;
mod limits;
pub(crate) mod listen;
mod protocol;
mod upstream;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use crate::error::Diagnostics;
use crate::file::{
    FileAdmin, FileConfig, FileLog, FileLogFormat, FileProxy, FileSupervisorEntry, Section,
};
use crate::model::{
    AdminConfig, Config, LogConfig, LogFormat, ProxyConfig, SupervisordConfig, SupervisordUrl,
};
use crate::position::LineIndex;
use crate::values;

pub(crate) use upstream::CheckedUpstream;

use limits::{DAY, GIB, HOUR, KIB, MIB};

/// Stands in for an address that could not be read, so checks can go on.
const NO_ADDRESS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Threads beyond this are a typo, not a machine.
const MAX_THREADS: usize = 1024;

pub(crate) const DEFAULT_PROXY_LISTEN: &str = "127.0.0.1:8080";
pub(crate) const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9900";

/// What checks need besides the diagnostics: line numbers, for messages that mention another
/// place in the file ("first defined at line 3").
pub(crate) struct Context<'a> {
    pub(crate) diagnostics: &'a mut Diagnostics,
    pub(crate) lines: &'a LineIndex<'a>,
}

impl Context<'_> {
    pub(crate) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diagnostics.error(span, message);
    }

    pub(crate) fn line(&self, span: &Range<usize>) -> usize {
        self.lines.position(span.start).0
    }
}

pub(crate) fn validate(file: &FileConfig, cx: &mut Context<'_>) -> Config {
    let (mut proxy, listen_spans) = proxy(
        file.proxy.as_ref(),
        &file.proxy_tls,
        file.acme.is_some(),
        cx,
    );
    proxy.acme = file.acme.as_ref().map(|section| acme::acme(section, cx));
    let admin = file.admin.as_ref().map(|section| admin(section, cx));
    let log = log(file.log.as_ref(), cx);
    let supervisors = supervisors(&file.supervisors, cx);

    // "none" is reported as reserved above; listing it as defined would only confuse.
    let defined: Vec<&str> = file
        .supervisors
        .iter()
        .map(|entry| entry.name.get_ref().as_str())
        .filter(|name| *name != "none")
        .collect();
    let upstreams: Vec<CheckedUpstream> = file
        .upstreams
        .iter()
        .enumerate()
        .map(|(index, entry)| upstream::upstream(index, entry, &defined, cx))
        .collect();
    if file.upstreams.is_empty() && !file.upstream_rejected {
        let span = file.upstream_key.clone().unwrap_or(0..0);
        cx.error(
            span,
            "no upstream defined: add at least one [[upstream]] with a name and a [[upstream.server]]",
        );
    }

    let admin_listen = admin
        .as_ref()
        .map(|(config, span)| Spanned::new(span.clone(), config.listen));
    cross::check(&listen_spans, admin_listen.as_ref(), &upstreams, cx);

    Config {
        source: None,
        proxy,
        admin: admin.map(|(config, _)| config),
        log,
        supervisors,
        upstreams: upstreams.into_iter().map(|u| u.config).collect(),
        cluster: file
            .cluster
            .as_ref()
            .map(|section| cluster::cluster(section, cx)),
    }
}

/// The proxy settings, and each TCP address it listens on with where it is written.
fn proxy(
    section: Option<&Section<FileProxy>>,
    tls: &[Section<crate::file::FileTls>],
    acme: bool,
    cx: &mut Context<'_>,
) -> (ProxyConfig, Vec<Spanned<SocketAddr>>) {
    let default = FileProxy::default();
    let file = section.map_or(&default, |s| &s.value);
    let listeners = listen::listeners(section, tls, acme, cx);

    let threads = file.threads.as_ref().map_or(0, |threads| {
        let value = *threads.get_ref();
        if value > MAX_THREADS {
            cx.error(
                threads.span(),
                format!("threads: {value} is too many (at most {MAX_THREADS}; 0 = one per core)"),
            );
        }
        value
    });

    let upgrade_idle_timeout = duration(
        "upgrade_idle_timeout",
        &file.upgrade_idle_timeout,
        0,
        30 * DAY,
        cx,
    );
    let temp_dir = match &file.temp_dir {
        Some(dir) if !dir.get_ref().starts_with('/') => {
            cx.error(
                dir.span(),
                format!("temp_dir: {:?} must be an absolute path", dir.get_ref()),
            );
            std::env::temp_dir()
        }
        Some(dir) => PathBuf::from(dir.get_ref()),
        None => std::env::temp_dir(),
    };
    let config = ProxyConfig {
        listen: listeners.listen,
        listen_tls: listeners.listen_tls,
        redirect_https: listeners.redirect_https,
        tls: listeners.tls,
        threads,
        connect_timeout: positive("connect_timeout", &file.connect_timeout, 5, HOUR, cx),
        read_timeout: positive("read_timeout", &file.read_timeout, 60, DAY, cx),
        client_idle_timeout: positive(
            "client_idle_timeout",
            &file.client_idle_timeout,
            75,
            DAY,
            cx,
        ),
        client_body_timeout: positive(
            "client_body_timeout",
            &file.client_body_timeout,
            60,
            DAY,
            cx,
        ),
        send_timeout: positive("send_timeout", &file.send_timeout, 60, DAY, cx),
        pool_idle_timeout: positive("pool_idle_timeout", &file.pool_idle_timeout, 50, DAY, cx),
        pool_max_idle_per_server: count(
            "pool_max_idle_per_server",
            &file.pool_max_idle_per_server,
            128,
            (0, 100_000),
            cx,
        ) as usize,
        shutdown_timeout: duration("shutdown_timeout", &file.shutdown_timeout, 30, DAY, cx),
        listen_backlog: count("listen_backlog", &file.listen_backlog, 511, (1, 65_535), cx) as u32,
        max_connections: count(
            "max_connections",
            &file.max_connections,
            10_000,
            (1, 10_000_000),
            cx,
        ) as usize,
        client_header_timeout: positive(
            "client_header_timeout",
            &file.client_header_timeout,
            60,
            HOUR,
            cx,
        ),
        max_header_size: bounded_size(
            "max_header_size",
            &file.max_header_size,
            32 * KIB,
            (KIB, MIB),
            cx,
        ) as usize,
        max_headers: count("max_headers", &file.max_headers, 100, (1, 10_000), cx) as usize,
        underscores_in_headers: file.underscores_in_headers.unwrap_or(false),
        http2_max_concurrent_streams: count(
            "http2_max_concurrent_streams",
            &file.http2_max_concurrent_streams,
            512,
            (1, 10_000),
            cx,
        ) as usize,
        // Not under the protocol's own 65,535 (a connection's window only grows), nor over
        // 1 GiB (the protocol's largest is 2 GiB - 1).
        http2_body_preread_size: bounded_size(
            "http2_body_preread_size",
            &file.http2_body_preread_size,
            MIB,
            (64 * KIB, GIB),
            cx,
        ) as u32,
        upgrade_idle_timeout: (!upgrade_idle_timeout.is_zero()).then_some(upgrade_idle_timeout),
        temp_dir,
        acme: None,
    };
    (config, listeners.tcp)
}

/// The admin settings, and where its listen address is written (the table, when defaulted).
fn admin(section: &Section<FileAdmin>, cx: &mut Context<'_>) -> (AdminConfig, Range<usize>) {
    let file = &section.value;
    let (listen, span) = match &file.listen {
        Some(listen) => match values::socket_addr(listen.get_ref()) {
            Ok(address) => (address, listen.span()),
            Err(message) => {
                cx.error(listen.span(), format!("listen: {message}"));
                (NO_ADDRESS, listen.span())
            }
        },
        None => (
            values::socket_addr(DEFAULT_ADMIN_LISTEN).unwrap_or(NO_ADDRESS),
            section.span.clone(),
        ),
    };
    let token = file.token.as_ref().map(|token| {
        let value = token.get_ref();
        if value.is_empty() {
            cx.error(
                token.span(),
                "token: must not be empty; remove the key to leave the admin API open",
            );
        } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            cx.error(
                token.span(),
                "token: must not contain whitespace (it is sent in an Authorization header)",
            );
        }
        value.clone()
    });
    let mut hosts: Vec<String> = Vec::new();
    for host in file.hosts.iter().flatten() {
        match values::host(host.get_ref()) {
            Ok(name) if hosts.contains(&name) => {
                cx.error(host.span(), format!("hosts: {name:?} is listed twice"));
            }
            Ok(name) => hosts.push(name),
            Err(message) => cx.error(host.span(), format!("hosts: {message}")),
        }
    }
    (
        AdminConfig {
            listen,
            token,
            hosts,
        },
        span,
    )
}

fn log(section: Option<&Section<FileLog>>, cx: &mut Context<'_>) -> LogConfig {
    let file = section.map(|s| &s.value);
    let access = access_log::access_log(file, cx);
    LogConfig {
        format: match file.and_then(|f| f.format) {
            Some(FileLogFormat::Json) => LogFormat::Json,
            Some(FileLogFormat::Text) | None => LogFormat::Text,
        },
        access_log: access.on,
        access_log_file: access.file,
        access_log_format: access.format,
        access_log_status: access.status,
        access_log_sample: access.sample,
        child_log_dir: file
            .and_then(|f| f.child_log_dir.as_deref())
            .filter(|d| !d.trim().is_empty())
            .map(std::path::PathBuf::from),
    }
}

fn supervisors(
    entries: &[FileSupervisorEntry],
    cx: &mut Context<'_>,
) -> BTreeMap<String, SupervisordConfig> {
    let mut out = BTreeMap::new();
    for entry in entries {
        let name = entry.name.get_ref();
        if name == "none" {
            cx.error(
                entry.name.span(),
                "supervisor name \"none\" is reserved (supervisor = \"none\" means static \
                 servers); choose another name",
            );
        } else if let Err(message) = values::name("supervisor name", name) {
            cx.error(entry.name.span(), message);
        }
        let section = &entry.section;
        let file = &section.value;
        let what = format!("[supervisors.{name}]");

        let url = match &file.url {
            Some(url) => values::supervisord_url(url.get_ref()).unwrap_or_else(|message| {
                cx.error(url.span(), format!("url: {message}"));
                placeholder_url()
            }),
            None => {
                if !section.is_rejected("url") {
                    cx.error(
                        section.span.clone(),
                        format!(
                            "{what} needs a url, e.g. url = \"http://127.0.0.1:9001/RPC2\" or \
                             url = \"unix:///run/supervisor.sock\""
                        ),
                    );
                }
                placeholder_url()
            }
        };

        for (key, value) in [("username", &file.username), ("password", &file.password)] {
            if let Some(value) = value.as_ref().filter(|v| v.get_ref().is_empty()) {
                cx.error(value.span(), format!("{key}: must not be empty"));
            }
        }
        // Half a credential is a typo or a forgotten line, never a deliberate setting.
        match (&file.username, &file.password) {
            (Some(_), None) if !section.is_rejected("password") => cx.error(
                section.key_span("username"),
                "username is set but password is missing: give both or neither",
            ),
            (None, Some(_)) if !section.is_rejected("username") => cx.error(
                section.key_span("password"),
                "password is set but username is missing: give both or neither",
            ),
            _ => {}
        }

        out.insert(
            name.clone(),
            SupervisordConfig {
                name: name.clone(),
                url,
                username: file.username.as_ref().map(|u| u.get_ref().clone()),
                password: file.password.as_ref().map(|p| p.get_ref().clone()),
                tls: connect::supervisord_tls(section, cx),
                poll_interval: positive("poll_interval", &file.poll_interval, 1, HOUR, cx),
                timeout: positive("timeout", &file.timeout, 10, HOUR, cx),
            },
        );
    }
    out
}

fn placeholder_url() -> SupervisordUrl {
    SupervisordUrl::Unix {
        path: Default::default(),
    }
}

pub(crate) use limits::{bounded_size, count, duration, positive};
