//! One `[[upstream]]` and its `[[upstream.server]]`s.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use toml::Spanned;

use super::limits::{DAY, GIB, HOUR, KIB, MIB, TIB};
use super::{Context, NO_ADDRESS, bounded_size, count, duration, positive};
use crate::file::{FileBalance, FileCommand, FileServer, FileUpstream, FileUpstreamEntry, Section};
use crate::model::{
    Balance, CommandLine, Readiness, ServerAddress, ServerConfig, SupervisorRef, TlsClientConfig,
    UpstreamConfig,
};
use crate::values;

/// Most weight a server may have: beyond this, weights are no longer a ratio anyone means.
pub(crate) const MAX_WEIGHT: u32 = 1000;
/// Most `max_conns` a server may have: far beyond any server's concurrency, and what one
/// request counter can count without a thought about overflow.
pub(crate) const MAX_CONNS: i64 = 1_000_000;

/// Server keys that only make sense when rouse runs the process itself.
const EMBEDDED_ONLY: &[&str] = &["env", "cwd", "startsecs", "stop_signal", "stop_timeout"];

/// An upstream as validated, with the places cross-checks point at.
pub(crate) struct CheckedUpstream {
    pub(crate) config: UpstreamConfig,
    /// The name's value, or the header when there is none.
    pub(crate) name_span: Range<usize>,
    pub(crate) path_prefix_span: Option<Range<usize>>,
    /// Normalized hosts, each with where it is written.
    pub(crate) hosts: Vec<Spanned<String>>,
    pub(crate) servers: Vec<CheckedServer>,
    /// Hosts and path prefix were read without error, so routing checks can trust them (a
    /// rejected `hosts` would otherwise make this look like a second default upstream).
    pub(crate) routable: bool,
    /// The supervisor kind is what the file says, not a stand-in for a rejected value.
    pub(crate) kind_known: bool,
}

pub(crate) struct CheckedServer {
    /// `None` when the address was missing or invalid (already reported).
    pub(crate) address: Option<Spanned<ServerAddress>>,
    /// The explicit `program`, or the server's header for a default one.
    pub(crate) program_span: Range<usize>,
}

pub(crate) fn upstream(
    index: usize,
    entry: &FileUpstreamEntry,
    defined_supervisors: &[&str],
    cx: &mut Context<'_>,
) -> CheckedUpstream {
    let section = &entry.section;
    let file = &section.value;

    let name = match &file.name {
        Some(name) => {
            if let Err(message) = values::name("upstream name", name.get_ref()) {
                cx.error(name.span(), message);
            }
            name.get_ref().clone()
        }
        None => {
            if !section.is_rejected("name") {
                cx.error(
                    section.span.clone(),
                    "[[upstream]] needs a name, e.g. name = \"app\"",
                );
            }
            format!("#{index}")
        }
    };
    let name_span = file
        .name
        .as_ref()
        .map_or_else(|| section.span.clone(), |n| n.span());

    let (supervisor, kind_known) = supervisor(section, defined_supervisors, cx);

    let mut routable = !section.is_rejected("hosts") && !section.is_rejected("path_prefix");
    let mut hosts: Vec<Spanned<String>> = Vec::new();
    for host in file.hosts.iter().flatten() {
        match values::host(host.get_ref()) {
            Ok(normalized) => {
                if let Some(first) = hosts.iter().find(|h| *h.get_ref() == normalized) {
                    let line = cx.line(&first.span());
                    cx.error(
                        host.span(),
                        format!("hosts: \"{normalized}\" is listed twice (also on line {line})"),
                    );
                } else {
                    hosts.push(Spanned::new(host.span(), normalized));
                }
            }
            Err(message) => {
                cx.error(host.span(), format!("hosts: {message}"));
                routable = false;
            }
        }
    }

    let path_prefix = match &file.path_prefix {
        Some(prefix) => {
            if let Err(message) = values::path_prefix("path_prefix", prefix.get_ref()) {
                cx.error(prefix.span(), message);
                routable = false;
            }
            prefix.get_ref().clone()
        }
        None => "/".to_owned(),
    };

    let supervisord_name = match &file.supervisord_name {
        Some(prefix) => {
            let value = prefix.get_ref();
            if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                cx.error(
                    prefix.span(),
                    format!(
                        "supervisord_name \"{value}\" must be a non-empty program-name prefix \
                         without whitespace"
                    ),
                );
            }
            value.clone()
        }
        None => name.clone(),
    };

    let ready = match &file.ready {
        Some(ready) => match values::readiness(ready.get_ref()) {
            Ok(Readiness::Supervisor) if supervisor == SupervisorRef::Static => {
                cx.error(
                    ready.span(),
                    "ready = \"supervisor\" needs a supervisor, but this upstream has \
                     supervisor = \"none\"; use \"tcp\" or \"http:/PATH\"",
                );
                Readiness::Tcp
            }
            Ok(readiness) => readiness,
            Err(message) => {
                cx.error(ready.span(), message);
                Readiness::Tcp
            }
        },
        None => Readiness::Tcp,
    };

    let mut never_wake = Vec::new();
    for prefix in file.never_wake.iter().flatten() {
        if let Err(message) = values::path_prefix("never_wake entry", prefix.get_ref()) {
            cx.error(prefix.span(), message);
        }
        never_wake.push(prefix.get_ref().clone());
    }

    let (servers, checked_servers) = servers(
        entry,
        &supervisor,
        kind_known,
        &supervisord_name,
        defined_supervisors,
        cx,
    );
    if entry.servers.is_empty() && !section.is_rejected("server") {
        cx.error(
            section.key_span("server"),
            format!("upstream \"{name}\" has no servers: add at least one [[upstream.server]]"),
        );
    }
    let (min_servers, max_servers) = scaling(section, servers.len(), cx);
    let mut servers = servers;
    let tls = super::connect::tls_settings(section, servers.iter().any(|s| s.tls.is_some()), cx);
    for server in servers.iter_mut().filter(|s| s.tls.is_some()) {
        server.tls = Some(tls.clone());
    }
    let servers: Vec<Arc<ServerConfig>> = servers.into_iter().map(Arc::new).collect();

    let target_in_flight = file.target_in_flight.as_ref().map_or(10, |target| {
        if *target.get_ref() == 0 {
            cx.error(target.span(), "target_in_flight: must be at least 1");
        }
        *target.get_ref()
    });
    let target_rps = file.target_rps.as_ref().map(|rps| {
        let value = *rps.get_ref();
        if !(value.is_finite() && value > 0.0) {
            cx.error(
                rps.span(),
                format!("target_rps: must be a number more than 0, not {value}"),
            );
        }
        value
    });

    let fail_timeout = positive("fail_timeout", &file.fail_timeout, 2, DAY, cx);
    let fail_timeout_max = positive("fail_timeout_max", &file.fail_timeout_max, 60, DAY, cx);
    if fail_timeout_max < fail_timeout
        && !section.is_rejected("fail_timeout")
        && !section.is_rejected("fail_timeout_max")
    {
        let span = file
            .fail_timeout_max
            .as_ref()
            .map_or_else(|| section.key_span("fail_timeout"), |max| max.span());
        cx.error(
            span,
            format!(
                "fail_timeout_max ({}) must not be less than fail_timeout ({})",
                crate::duration::format_duration(fail_timeout_max),
                crate::duration::format_duration(fail_timeout),
            ),
        );
    }

    let config = UpstreamConfig {
        name,
        hosts: hosts.iter().map(|h| h.get_ref().clone()).collect(),
        path_prefix,
        supervisor,
        supervisord_name,
        balance: match file.balance {
            Some(FileBalance::RoundRobin) => Balance::RoundRobin,
            Some(FileBalance::Fair) | None => Balance::Fair,
        },
        min_servers,
        max_servers,
        target_in_flight,
        target_rps,
        idle_timeout: positive("idle_timeout", &file.idle_timeout, 60, 30 * DAY, cx),
        start_timeout: positive("start_timeout", &file.start_timeout, 30, HOUR, cx),
        queue_limit: count("queue_limit", &file.queue_limit, 1000, (0, 1_000_000), cx) as usize,
        ready,
        never_wake,
        waiting_page: file.waiting_page.unwrap_or(false),
        slow_start: duration("slow_start", &file.slow_start, 5, HOUR, cx),
        fail_timeout,
        fail_timeout_max,
        max_request_body: bounded_size(
            "max_request_body",
            &file.max_request_body,
            100 * MIB,
            (0, TIB),
            cx,
        ),
        request_buffering: file.request_buffering.unwrap_or(true),
        request_buffer_size: bounded_size(
            "request_buffer_size",
            &file.request_buffer_size,
            MIB,
            (KIB, GIB),
            cx,
        ) as usize,
        response_buffering: file.response_buffering.unwrap_or(true),
        response_buffer_size: bounded_size(
            "response_buffer_size",
            &file.response_buffer_size,
            MIB,
            (KIB, GIB),
            cx,
        ) as usize,
        resolve_interval: super::connect::resolve_interval(file, cx),
        max_response_buffer: bounded_size(
            "max_response_buffer",
            &file.max_response_buffer,
            GIB,
            (KIB, TIB),
            cx,
        ),
        protocol: super::protocol::protocol(section, &servers, cx),
        servers,
    };
    CheckedUpstream {
        config,
        name_span,
        path_prefix_span: file.path_prefix.as_ref().map(|p| p.span()),
        hosts,
        servers: checked_servers,
        routable,
        kind_known,
    }
}

/// Who runs the servers, and whether that is known for sure (when `supervisor` itself was
/// rejected, checks that depend on it would only repeat the same mistake).
fn supervisor(
    section: &Section<FileUpstream>,
    defined: &[&str],
    cx: &mut Context<'_>,
) -> (SupervisorRef, bool) {
    let Some(supervisor) = &section.value.supervisor else {
        return (SupervisorRef::Embedded, !section.is_rejected("supervisor"));
    };
    let name = supervisor.get_ref();
    if name == "none" {
        return (SupervisorRef::Static, true);
    }
    if !defined.contains(&name.as_str()) {
        let known = defined_supervisors_text(defined);
        cx.error(
            supervisor.span(),
            format!(
                "supervisor \"{name}\" is not defined; {known} (use \"none\" for static servers, \
                 or leave supervisor out for the embedded supervisor)"
            ),
        );
    }
    // An undefined name is still clearly meant as a supervisord: check the servers as such.
    (SupervisorRef::Supervisord(name.clone()), true)
}

/// `min_servers` and `max_servers` (default: every server).
fn scaling(section: &Section<FileUpstream>, count: usize, cx: &mut Context<'_>) -> (usize, usize) {
    let file = &section.value;
    let min = file.min_servers.as_ref().map_or(0, |m| *m.get_ref());
    let max = file.max_servers.as_ref().map_or(count, |m| *m.get_ref());
    if count == 0 || section.is_rejected("min_servers") || section.is_rejected("max_servers") {
        return (min, max);
    }
    if let Some(max_spanned) = &file.max_servers {
        if max == 0 {
            cx.error(
                max_spanned.span(),
                "max_servers: must be at least 1 (min_servers = 0 already allows scaling to zero)",
            );
        } else if max > count {
            cx.error(
                max_spanned.span(),
                format!("max_servers ({max}) is more than the number of servers ({count})"),
            );
        }
    }
    if let Some(min_spanned) = &file.min_servers {
        if min > count {
            cx.error(
                min_spanned.span(),
                format!("min_servers ({min}) is more than the number of servers ({count})"),
            );
        } else if min > max && max > 0 {
            cx.error(
                min_spanned.span(),
                format!("min_servers ({min}) is more than max_servers ({max})"),
            );
        }
    }
    (min, max)
}

fn servers(
    entry: &FileUpstreamEntry,
    supervisor: &SupervisorRef,
    kind_known: bool,
    supervisord_name: &str,
    defined: &[&str],
    cx: &mut Context<'_>,
) -> (Vec<ServerConfig>, Vec<CheckedServer>) {
    entry
        .servers
        .iter()
        .enumerate()
        .map(|(index, section)| {
            let own = server_supervisor(index, section, supervisor, kind_known, defined, cx);
            server(
                index,
                section,
                supervisor,
                kind_known,
                supervisord_name,
                own,
                cx,
            )
        })
        .unzip()
}

/// A server's own `supervisor`: another supervisord than its upstream's (another host).
fn server_supervisor(
    index: usize,
    section: &Section<FileServer>,
    upstream: &SupervisorRef,
    kind_known: bool,
    defined: &[&str],
    cx: &mut Context<'_>,
) -> SupervisorRef {
    let Some(own) = &section.value.supervisor else {
        return upstream.clone();
    };
    let name = own.get_ref();
    if kind_known && !matches!(upstream, SupervisorRef::Supervisord(_)) {
        cx.error(
            section.key_span("supervisor"),
            format!(
                "server {index}: supervisor on a server is only for supervisord upstreams (set \
                 the upstream's supervisor to one of them first)"
            ),
        );
        return upstream.clone();
    }
    if !defined.contains(&name.as_str()) {
        let known = defined_supervisors_text(defined);
        cx.error(
            own.span(),
            format!("server {index}: supervisor \"{name}\" is not defined; {known}"),
        );
    }
    SupervisorRef::Supervisord(name.clone())
}

#[allow(clippy::too_many_arguments)]
fn server(
    index: usize,
    section: &Section<FileServer>,
    supervisor: &SupervisorRef,
    kind_known: bool,
    supervisord_name: &str,
    own_supervisor: SupervisorRef,
    cx: &mut Context<'_>,
) -> (ServerConfig, CheckedServer) {
    let file = &section.value;
    let embedded = *supervisor == SupervisorRef::Embedded;
    let who = match supervisor {
        SupervisorRef::Embedded => "the embedded supervisor".to_owned(),
        SupervisorRef::Static => "supervisor = \"none\"".to_owned(),
        SupervisorRef::Supervisord(name) => format!("supervisor = \"{name}\""),
    };

    let (address, tls) = super::connect::server_address(index, section, cx);

    let weight = file.weight.as_ref().map_or(1, |weight| {
        let value = *weight.get_ref();
        if !(1..=MAX_WEIGHT).contains(&value) {
            cx.error(
                weight.span(),
                format!("weight: {value} is out of range (1 to {MAX_WEIGHT})"),
            );
        }
        value
    });

    let max_conns = file.max_conns.as_ref().map_or(0, |max| {
        let value = *max.get_ref();
        if !(0..=MAX_CONNS).contains(&value) {
            cx.error(
                max.span(),
                format!("max_conns: {value} is out of range (0 = no limit, up to {MAX_CONNS})"),
            );
            return 0;
        }
        value as u32
    });

    let program = match &file.program {
        Some(program) => {
            if kind_known && !matches!(supervisor, SupervisorRef::Supervisord(_)) {
                cx.error(
                    section.key_span("program"),
                    format!(
                        "program is only for supervisord upstreams; this one uses {who} \
                         (its servers are named {supervisord_name}{index}, ...)"
                    ),
                );
            } else if let Err(message) = values::program(program.get_ref()) {
                cx.error(program.span(), message);
            }
            program.get_ref().clone()
        }
        None => format!("{supervisord_name}{index}"),
    };
    let program_span = file
        .program
        .as_ref()
        .map_or_else(|| section.span.clone(), |p| p.span());

    let command = match (&file.command, embedded) {
        (Some(command), true) => command_line(command, cx),
        (Some(_), false) => {
            if kind_known {
                cx.error(
                    section.key_span("command"),
                    format!(
                        "command is only for the embedded supervisor; this upstream uses {who}, \
                         which starts its servers itself"
                    ),
                );
            }
            None
        }
        (None, true) => {
            if kind_known && !section.is_rejected("command") {
                cx.error(
                    section.span.clone(),
                    format!(
                        "server {index} needs a command: the embedded supervisor runs it \
                         (or set supervisor = \"none\" on the upstream for servers started \
                         elsewhere)"
                    ),
                );
            }
            None
        }
        (None, false) => None,
    };
    if !embedded && kind_known {
        for key in EMBEDDED_ONLY {
            if section.keys.contains_key(*key) {
                cx.error(
                    section.key_span(key),
                    format!("{key} is only for the embedded supervisor; this upstream uses {who}"),
                );
            }
        }
    }

    let env = match (&file.env, embedded) {
        (Some(env), true) => environment(env, cx),
        _ => BTreeMap::new(),
    };
    let cwd = match (&file.cwd, embedded) {
        (Some(cwd), true) => {
            if cwd.get_ref().is_empty() || cwd.get_ref().contains('\0') {
                cx.error(cwd.span(), "cwd: must be a directory path");
            }
            Some(PathBuf::from(cwd.get_ref()))
        }
        _ => None,
    };
    let stop_signal = match &file.stop_signal {
        Some(signal) if embedded => {
            values::stop_signal(signal.get_ref()).unwrap_or_else(|message| {
                cx.error(signal.span(), message);
                "TERM".to_owned()
            })
        }
        _ => "TERM".to_owned(),
    };

    let config = ServerConfig {
        index,
        address: address
            .as_ref()
            .map_or(ServerAddress::Ip(NO_ADDRESS), |a| a.get_ref().clone()),
        // The upstream's settings replace these once all its servers are read.
        tls: tls.then(TlsClientConfig::default),
        weight,
        max_conns,
        program,
        supervisor: own_supervisor,
        command,
        env,
        cwd,
        startsecs: duration("startsecs", &file.startsecs, 1, HOUR, cx),
        stop_signal,
        stop_timeout: duration("stop_timeout", &file.stop_timeout, 10, DAY, cx),
    };
    (
        config,
        CheckedServer {
            address,
            program_span,
        },
    )
}

fn command_line(command: &Spanned<FileCommand>, cx: &mut Context<'_>) -> Option<CommandLine> {
    match command.get_ref() {
        FileCommand::Shell(line) => {
            if line.trim().is_empty() {
                cx.error(command.span(), "command: must not be empty");
            }
            Some(CommandLine::Shell(line.as_str().into()))
        }
        FileCommand::Argv(argv) => {
            match argv.first() {
                None => cx.error(command.span(), "command: the argv array must not be empty"),
                Some(program) if program.trim().is_empty() => cx.error(
                    command.span(),
                    "command: the first element (the program to run) must not be empty",
                ),
                Some(_) => {}
            }
            Some(CommandLine::Argv(argv.as_slice().into()))
        }
    }
}

/// Environment variables: names the kernel will accept (no '=', no NUL), values without NUL.
fn environment(
    env: &Spanned<BTreeMap<String, String>>,
    cx: &mut Context<'_>,
) -> BTreeMap<String, String> {
    for (name, value) in env.get_ref() {
        if name.is_empty() || name.contains(['=', '\0']) {
            cx.error(
                env.span(),
                format!("env: invalid variable name \"{}\"", name.escape_debug()),
            );
        }
        if value.contains('\0') {
            cx.error(env.span(), format!("env: {name} contains a NUL character"));
        }
    }
    env.get_ref().clone()
}

/// The tail of an "is not defined" error: which supervisors there are to choose from.
fn defined_supervisors_text(defined: &[&str]) -> String {
    if defined.is_empty() {
        "no [supervisors.NAME] table is defined".to_owned()
    } else {
        format!("defined: {}", defined.join(", "))
    }
}
