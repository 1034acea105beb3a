//! The human summary `rouse check` prints: what rouse will do with this configuration.

use std::fmt::Write as _;

use crate::duration::format_duration;
use crate::model::{
    AcmeConfig, Balance, ClusterConfig, CommandLine, Config, LogFormat, Readiness, SupervisorRef,
};
use crate::size::format_size;

/// Width of the labels of the first block, "supervisors" and two spaces.
const LABEL: usize = 13;

/// `https` and `redirect` rows, when those listeners are configured.
fn tls_rows(config: &Config) -> Vec<(&'static str, String)> {
    let proxy = &config.proxy;
    let join = |addrs: &[std::net::SocketAddr]| {
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut rows = Vec::new();
    if !proxy.listen_tls.is_empty() {
        let certs: Vec<String> = proxy
            .tls
            .iter()
            .map(|t| t.cert.display().to_string())
            .collect();
        rows.push((
            "https",
            format!(
                "{} (certificates: {})",
                join(&proxy.listen_tls),
                certs.join(", ")
            ),
        ));
    }
    if !proxy.redirect_https.is_empty() {
        rows.push((
            "redirect",
            format!("{} -> https://", join(&proxy.redirect_https)),
        ));
    }
    rows
}

/// Plain text, aligned in columns, ending with a newline.
pub fn summary(config: &Config) -> String {
    let mut out = String::new();
    let listen: Vec<String> = config.proxy.listen.iter().map(|a| a.to_string()).collect();
    let threads = match config.proxy.threads {
        0 => "one worker thread per core".to_owned(),
        1 => "1 worker thread".to_owned(),
        n => format!("{n} worker threads"),
    };
    let admin = match &config.admin {
        Some(admin) if admin.token.is_some() => format!("{} (token required)", admin.listen),
        Some(admin) => format!("{} (no token)", admin.listen),
        None => "off".to_owned(),
    };
    let log = format!(
        "{}, access log {}",
        match config.log.format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        },
        match (&config.log.access_log_file, config.log.access_log) {
            (_, false) => "off".to_owned(),
            (None, true) => "on".to_owned(),
            (Some(file), true) => format!("to {}", file.display()),
        }
    );
    let supervisors: Vec<Vec<String>> = config
        .supervisors
        .values()
        .map(|s| {
            let url = s.shown_url();
            let auth = match &s.username {
                Some(user) => format!("user {user}"),
                None => "no auth".to_owned(),
            };
            vec![
                s.name.clone(),
                url,
                auth,
                format!("poll {}", format_duration(s.poll_interval)),
                format!("timeout {}", format_duration(s.timeout)),
            ]
        })
        .collect();
    let supervisors = if supervisors.is_empty() {
        "none\n".to_owned()
    } else {
        columns(&supervisors, "")
    };
    let proxy = &config.proxy;
    let limits = format!(
        "{} connections, head {} / {} headers within {}",
        proxy.max_connections,
        format_size(proxy.max_header_size as u64),
        proxy.max_headers,
        format_duration(proxy.client_header_timeout),
    );
    let listen = if listen.is_empty() {
        "no plain listener".to_owned()
    } else {
        listen.join(", ")
    };
    let mut rows = vec![("listen", format!("{listen} ({threads})"))];
    rows.extend(tls_rows(config));
    rows.extend([("limits", limits), ("admin", admin), ("log", log)]);
    for (label, value) in rows {
        let _ = writeln!(out, "{label:<LABEL$}{value}");
    }
    if let Some(acme) = &config.proxy.acme {
        let _ = writeln!(out, "{:<LABEL$}{}", "acme", acme_summary(acme));
    }
    if let Some(cluster) = &config.cluster {
        let _ = writeln!(out, "{:<LABEL$}{}", "cluster", cluster_summary(cluster));
    }
    // The supervisors' own table is aligned on its own, shifted right of the labels.
    for (i, line) in supervisors.lines().enumerate() {
        let label = if i == 0 { "supervisors" } else { "" };
        let _ = writeln!(out, "{label:<LABEL$}{line}");
    }

    for upstream in &config.upstreams {
        let _ = writeln!(out, "\nupstream \"{}\"", upstream.name);
        let hosts = if upstream.hosts.is_empty() {
            "(default)".to_owned()
        } else {
            upstream.hosts.join(", ")
        };
        let supervisor = match &upstream.supervisor {
            SupervisorRef::Embedded => "embedded".to_owned(),
            SupervisorRef::Static => "none (static servers)".to_owned(),
            SupervisorRef::Supervisord(name) => format!("supervisord \"{name}\""),
        };
        let balance = match upstream.balance {
            Balance::Fair => "fair",
            Balance::RoundRobin => "round_robin",
        };
        let ready = match &upstream.ready {
            Readiness::Tcp => "tcp".to_owned(),
            Readiness::Http { path } => format!("http:{path}"),
            Readiness::Supervisor => "supervisor".to_owned(),
        };
        let mut rows = vec![
            vec!["hosts".to_owned(), hosts],
            vec!["path_prefix".to_owned(), upstream.path_prefix.clone()],
            vec!["supervisor".to_owned(), supervisor],
            vec!["balance".to_owned(), balance.to_owned()],
            vec![
                "servers".to_owned(),
                format!("min {}, max {}", upstream.min_servers, upstream.max_servers),
            ],
            vec!["ready".to_owned(), ready],
            vec![
                "idle_timeout".to_owned(),
                format_duration(upstream.idle_timeout),
            ],
            vec![
                "start_timeout".to_owned(),
                format_duration(upstream.start_timeout),
            ],
            vec!["bodies".to_owned(), bodies(upstream)],
        ];
        // Said only when it is not the default, so plain HTTP/1.1 summaries stay as they were.
        if upstream.protocol != crate::model::Protocol::Http1 {
            rows.push(vec![
                "protocol".to_owned(),
                upstream.protocol.name().to_owned(),
            ]);
        }
        rows.extend(connect_rows(upstream));
        out.push_str(&columns(&rows, "  "));

        let with_command = upstream.servers.iter().any(|s| s.command.is_some());
        let mut header = vec!["index", "address", "weight", "program"];
        if with_command {
            header.push("command");
        }
        let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
        for server in &upstream.servers {
            // A server on another supervisord than its upstream's says which.
            let program = match &server.supervisor {
                SupervisorRef::Supervisord(own) if server.supervisor != upstream.supervisor => {
                    format!("{} (on {own})", server.program)
                }
                _ => server.program.clone(),
            };
            let mut row = vec![
                server.index.to_string(),
                match server.tls {
                    Some(_) => format!("https://{}", server.address),
                    None => server.address.to_string(),
                },
                server.weight.to_string(),
                program,
            ];
            if let Some(command) = &server.command {
                row.push(command_text(command));
            }
            rows.push(row);
        }
        out.push_str(&columns(&rows, "  "));
    }
    out
}

/// How names are resolved and TLS servers verified, for upstreams that have any.
fn connect_rows(upstream: &crate::model::UpstreamConfig) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let named = upstream
        .servers
        .iter()
        .any(|s| matches!(s.address, crate::model::ServerAddress::Name { .. }));
    if named {
        rows.push(vec![
            "resolve".to_owned(),
            format!("every {}", format_duration(upstream.resolve_interval)),
        ]);
    }
    if let Some(tls) = upstream.servers.iter().find_map(|s| s.tls.as_ref()) {
        let trust = match (&tls.ca_file, tls.verify) {
            (_, false) => "certificates not verified".to_owned(),
            (Some(ca), true) => format!("verified against {}", ca.display()),
            (None, true) => "verified against the web PKI roots".to_owned(),
        };
        let name = match &tls.server_name {
            Some(name) => format!(", server name {name}"),
            None => String::new(),
        };
        rows.push(vec!["tls".to_owned(), format!("{trust}{name}")]);
    }
    rows
}

/// The request body limit and how bodies are buffered, in one line.
fn bodies(upstream: &crate::model::UpstreamConfig) -> String {
    let limit = match upstream.max_request_body {
        0 => "requests unlimited".to_owned(),
        n => format!("requests up to {}", format_size(n)),
    };
    let request = if upstream.request_buffering {
        format!(
            "buffered ({} in memory)",
            format_size(upstream.request_buffer_size as u64)
        )
    } else {
        "streamed".to_owned()
    };
    let response = if upstream.response_buffering {
        format!(
            "responses buffered ({} in memory, {} at most)",
            format_size(upstream.response_buffer_size as u64),
            format_size(upstream.max_response_buffer)
        )
    } else {
        "responses streamed".to_owned()
    };
    format!("{limit} {request}; {response}")
}

/// A command as one might type it: argv elements are quoted when the shell would split them.
fn command_text(command: &CommandLine) -> String {
    match command {
        CommandLine::Shell(line) => line.to_string(),
        CommandLine::Argv(argv) => argv
            .iter()
            .map(|arg| {
                let plain = !arg.is_empty()
                    && arg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
                if plain {
                    arg.clone()
                } else {
                    format!("'{}'", arg.replace('\'', r"'\''"))
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Rows padded into columns (two spaces apart), each line starting with `indent`.
fn columns(rows: &[Vec<String>], indent: &str) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                let width = widths.get(i).copied().unwrap_or(0);
                let _ = write!(line, "{cell:<width$}  ");
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `example.com, www.example.com from https://… (HTTP-01), renewed 30d before expiry, in DIR`
fn acme_summary(acme: &AcmeConfig) -> String {
    format!(
        "{} from {} (HTTP-01), renewed {} before expiry, kept in {}",
        acme.domains.join(", "),
        acme.directory,
        format_duration(acme.renew_before),
        acme.dir.display()
    )
}

/// `"edge" through etcd http://…, http://…; id edge-1 (lease 5s, timeout 1s, user ops)`: the
/// password never, whoever reads the output.
fn cluster_summary(cluster: &ClusterConfig) -> String {
    let id = match &cluster.id {
        Some(id) => format!("id {id}"),
        None => "id: host name/first listen address".to_owned(),
    };
    let mut details = vec![
        format!("lease {}", format_duration(cluster.lease_ttl)),
        format!("timeout {}", format_duration(cluster.timeout)),
    ];
    if let Some(user) = &cluster.user {
        details.push(format!("user {user}"));
    }
    if let Some(ca) = &cluster.ca_file {
        details.push(format!("CA {}", ca.display()));
    }
    if let Some(cert) = &cluster.cert_file {
        details.push(format!("client certificate {}", cert.display()));
    }
    format!(
        "\"{}\" through etcd {}; {id} ({})",
        cluster.name,
        cluster.etcd.join(", "),
        details.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned() {
        let rows = vec![
            vec!["a".to_owned(), "bb".to_owned(), "c".to_owned()],
            vec!["aaa".to_owned(), "b".to_owned(), "".to_owned()],
        ];
        assert_eq!(columns(&rows, "  "), "  a    bb  c\n  aaa  b\n");
    }

    #[test]
    fn argv_is_quoted_only_when_needed() {
        let argv =
            CommandLine::Argv(vec!["python3".into(), "-c".into(), "print('hi')".into()].into());
        assert_eq!(command_text(&argv), r"python3 -c 'print('\''hi'\'')'");
        let shell = CommandLine::Shell("a | b".into());
        assert_eq!(command_text(&shell), "a | b");
    }
}
