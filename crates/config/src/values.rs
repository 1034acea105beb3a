//! Parsers for single values with a meaning (addresses, URLs, signals, ...). Each returns the
//! runtime value or a message naming the bad value; where it is in the file is the caller's job.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::model::{Readiness, SupervisordUrl};

pub use crate::server_address::{host_name, server_address};

/// Signals a server may be stopped with: the ones that make sense to ask a process to exit.
pub const STOP_SIGNALS: &[&str] = &["HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "TERM"];

/// `IP:PORT`, `[IPv6]:PORT`, or `localhost:PORT` (as 127.0.0.1, so that it never depends on
/// name resolution or on which of ::1 / 127.0.0.1 "localhost" means on this machine).
pub fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let example = "write IP:PORT, e.g. \"127.0.0.1:9101\"";
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("invalid address \"{text}\": no port; {example}"));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("invalid address \"{text}\": bad port \"{port}\"; {example}"))?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if host.parse::<IpAddr>().is_ok() {
        // A bare IPv6 address: its own colons make the port ambiguous without brackets.
        return Err(format!(
            "invalid address \"{text}\": write an IPv6 address as [IP]:PORT"
        ));
    }
    Err(format!(
        "invalid address \"{text}\": \"{host}\" is not an IP address (host names are not \
         resolved, except localhost); {example}"
    ))
}

/// A `listen` entry: `IP:PORT` (as [`socket_addr`]) or `unix:/absolute/path`.
pub fn listen_addr(text: &str) -> Result<crate::model::ListenAddr, String> {
    use crate::model::ListenAddr;
    match text.strip_prefix("unix:") {
        Some(path) if path.starts_with('/') && path.len() > 1 => {
            Ok(ListenAddr::Unix(PathBuf::from(path)))
        }
        Some(path) => Err(format!(
            "invalid address \"{text}\": the socket path {path:?} must be absolute, as in \
             \"unix:/run/rouse/http.sock\""
        )),
        None => socket_addr(text).map(ListenAddr::Tcp),
    }
}

/// A `hosts` entry: lower-cased, without a `:port` suffix (the Host header may carry one, the
/// match ignores it).
pub fn host(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("empty host name".into());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid host \"{text}\": contains whitespace"));
    }
    if text.contains(['/', '@', '?', '#']) {
        return Err(format!(
            "invalid host \"{text}\": write a host name only, without scheme or path"
        ));
    }
    let lower = text.to_ascii_lowercase();
    let name = if let Some(rest) = lower.strip_prefix('[') {
        // [IPv6] or [IPv6]:port
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(format!("invalid host \"{text}\": missing ']'"));
        };
        if !after.is_empty() && !is_port_suffix(after) {
            return Err(format!("invalid host \"{text}\": bad port"));
        }
        format!("[{inside}]")
    } else {
        match lower.split_once(':') {
            Some((name, port)) if !port.contains(':') => {
                if !is_port_suffix(&format!(":{port}")) {
                    return Err(format!("invalid host \"{text}\": bad port \"{port}\""));
                }
                name.to_owned()
            }
            // Several colons: a bare IPv6 address, which has no port to strip.
            _ => lower,
        }
    };
    if name.is_empty() || name == "[]" {
        return Err(format!(
            "invalid host \"{text}\": no host name before the port"
        ));
    }
    Ok(name)
}

fn is_port_suffix(text: &str) -> bool {
    text.strip_prefix(':')
        .is_some_and(|port| !port.is_empty() && port.parse::<u16>().is_ok())
}

/// `http://host:port/path` or `https://host:port/path` (path default `/RPC2`; which of the two
/// is [`is_https`]), or `unix:///absolute/path`.
pub fn supervisord_url(text: &str) -> Result<SupervisordUrl, String> {
    // Errors quote the url as written, minus any password in it.
    let shown = redact_url(text);
    let expected = "expected \"http://HOST:PORT/RPC2\", \"https://HOST:PORT/RPC2\" or \
                    \"unix:///path/to/supervisor.sock\"";
    if let Some(path) = text.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(format!(
                "invalid url {shown:?}: the socket path must be absolute, as in \
                 \"unix:///run/supervisor.sock\""
            ));
        }
        return Ok(SupervisordUrl::Unix {
            path: PathBuf::from(path),
        });
    }
    // https: supervisord behind a TLS-terminating proxy (or stunnel), verified as any server.
    let Some(rest) = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
    else {
        return Err(format!("invalid url {shown:?}: {expected}"));
    };
    if rest.contains(['?', '#']) || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid url {shown:?}: {expected}"));
    }
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(format!(
            "invalid url {shown:?}: put credentials in username and password, not in the url"
        ));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        match bracketed.split_once("]:") {
            Some((host, port)) => (host, port),
            None => {
                return Err(format!(
                    "invalid url {shown:?}: a port is required; {expected}"
                ));
            }
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, port),
            _ => {
                return Err(format!(
                    "invalid url {shown:?}: a port is required; {expected}"
                ));
            }
        }
    };
    if host.is_empty() {
        return Err(format!("invalid url {shown:?}: no host; {expected}"));
    }
    if host.parse::<IpAddr>().is_err() {
        host_name(host).map_err(|why| format!("invalid url {shown:?}: {why}"))?;
    }
    let port = match port.parse::<u16>() {
        Ok(port) if port != 0 => port,
        _ => return Err(format!("invalid url {shown:?}: bad port {port:?}")),
    };
    // "http://host:9001" and "http://host:9001/" are what supervisorctl's serverurl looks like;
    // both mean supervisord's own endpoint.
    let path = if path.is_empty() || path == "/" {
        "/RPC2".to_owned()
    } else {
        path.to_owned()
    };
    Ok(SupervisordUrl::Http {
        host: host.to_ascii_lowercase(),
        port,
        path,
    })
}

/// Whether a supervisord url asks for TLS.
pub fn is_https(url: &str) -> bool {
    url.starts_with("https://")
}

/// `scheme://user:password@host/...` with the password replaced by `***`, for every place a
/// url is printed (errors, logs, answers): a config check must not leak a secret into a CI
/// log or a terminal recording.
pub fn redact_url(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => text.to_owned(),
    }
}

/// "TERM", "SIGTERM", "term" → "TERM".
pub fn stop_signal(text: &str) -> Result<String, String> {
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if STOP_SIGNALS.contains(&name) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "unknown stop_signal \"{text}\"; expected one of {}",
            STOP_SIGNALS.join(", ")
        ))
    }
}

/// "tcp" | "http:/path" | "supervisor".
pub fn readiness(text: &str) -> Result<Readiness, String> {
    match text {
        "tcp" => Ok(Readiness::Tcp),
        "supervisor" => Ok(Readiness::Supervisor),
        _ => match text.strip_prefix("http:") {
            Some(path)
                if path.starts_with('/')
                    && !path.starts_with("//")
                    && !path.contains(char::is_whitespace) =>
            {
                Ok(Readiness::Http {
                    path: path.to_owned(),
                })
            }
            Some(_) => Err(format!(
                "invalid ready \"{text}\": the path after \"http:\" must start with one '/', \
                 as in \"http:/healthz\""
            )),
            None => Err(format!(
                "invalid ready \"{text}\"; expected \"tcp\", \"http:/PATH\" or \"supervisor\""
            )),
        },
    }
}

/// Names of upstreams and supervisors: they end up in URLs of the admin API and in metric
/// labels, so they are kept to characters that need no escaping anywhere.
pub fn name(what: &str, text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "invalid {what} \"{text}\": {bad:?} is not allowed; use letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

/// A supervisord program name, or a `group:name` pair, as supervisord's XML-RPC accepts it.
pub fn program(text: &str) -> Result<(), String> {
    let parts: Vec<&str> = text.split(':').collect();
    let well_formed = parts.len() <= 2
        && parts.iter().all(|part| {
            !part.is_empty() && !part.chars().any(|c| c.is_whitespace() || c.is_control())
        });
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "invalid program \"{text}\"; expected a supervisord program name or \"group:name\""
        ))
    }
}

/// A path prefix (`path_prefix`, `never_wake`).
pub fn path_prefix(key: &str, text: &str) -> Result<(), String> {
    if !text.starts_with('/') {
        return Err(format!("{key} \"{text}\" must start with '/'"));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{key} \"{text}\" must not contain whitespace"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_passwords() {
        assert_eq!(
            redact_url("http://user:pass@host:9001/RPC2"),
            "http://user:***@host:9001/RPC2"
        );
        assert_eq!(
            redact_url("http://user@host/x@y"),
            "http://user:***@host/x@y"
        );
        assert_eq!(redact_url("http://a:b:c@h@i:1/"), "http://a:***@i:1/");
        assert_eq!(redact_url("http://host:9001/RPC2"), "http://host:9001/RPC2");
        assert_eq!(redact_url("unix:///run/s.sock"), "unix:///run/s.sock");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn socket_addresses() {
        assert_eq!(
            socket_addr("127.0.0.1:9101"),
            Ok("127.0.0.1:9101".parse().unwrap())
        );
        assert_eq!(socket_addr("[::1]:80"), Ok("[::1]:80".parse().unwrap()));
        assert_eq!(
            socket_addr("localhost:80"),
            Ok("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(
            socket_addr("LOCALHOST:80"),
            Ok("127.0.0.1:80".parse().unwrap())
        );
        for bad in [
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:99999",
            "example.com:80",
            "::1:80",
            "",
        ] {
            let message = socket_addr(bad).unwrap_err();
            assert!(message.contains(&format!("\"{bad}\"")), "{message}");
        }
        assert!(
            socket_addr("example.com:80")
                .unwrap_err()
                .contains("not an IP address")
        );
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(host("App.Example.COM").as_deref(), Ok("app.example.com"));
        assert_eq!(host("example.com:8080").as_deref(), Ok("example.com"));
        assert_eq!(host("[::1]:8080").as_deref(), Ok("[::1]"));
        assert_eq!(host("[::1]").as_deref(), Ok("[::1]"));
        assert_eq!(host("::1").as_deref(), Ok("::1"));
        for bad in [
            "",
            " ",
            "a b",
            "example.com:http",
            ":80",
            "http://x",
            "[::1",
        ] {
            assert!(host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn supervisord_urls() {
        let http = |host: &str, port, path: &str| SupervisordUrl::Http {
            host: host.into(),
            port,
            path: path.into(),
        };
        assert_eq!(
            supervisord_url("http://127.0.0.1:9001/RPC2"),
            Ok(http("127.0.0.1", 9001, "/RPC2"))
        );
        assert_eq!(
            supervisord_url("http://Host:9001"),
            Ok(http("host", 9001, "/RPC2"))
        );
        assert_eq!(
            supervisord_url("http://h:9001/"),
            Ok(http("h", 9001, "/RPC2"))
        );
        assert_eq!(
            supervisord_url("http://h:9001/x/RPC2"),
            Ok(http("h", 9001, "/x/RPC2"))
        );
        assert_eq!(
            supervisord_url("http://[::1]:9001"),
            Ok(http("::1", 9001, "/RPC2"))
        );
        assert_eq!(
            supervisord_url("unix:///run/supervisor.sock"),
            Ok(SupervisordUrl::Unix {
                path: "/run/supervisor.sock".into()
            })
        );
        for bad in [
            "",
            "127.0.0.1:9001",
            "http://h/RPC2",
            "http://h:0",
            "http://h:x",
            "http://:9001",
            "http://u:p@h:9001",
            "https://h/RPC2",
            "unix://run/supervisor.sock",
            "unix://",
            "ftp://h:1",
            "http://h:1/a b",
            "http://bad!host:9001",
            "https://-h-:9001",
        ] {
            let message = supervisord_url(bad).unwrap_err();
            assert!(
                message.contains(&format!("\"{}\"", redact_url(bad))),
                "{message}"
            );
        }
    }

    #[test]
    fn stop_signals() {
        assert_eq!(stop_signal("TERM").as_deref(), Ok("TERM"));
        assert_eq!(stop_signal("sigterm").as_deref(), Ok("TERM"));
        assert_eq!(stop_signal("SigUsr1").as_deref(), Ok("USR1"));
        assert!(stop_signal("SIGSEGV").unwrap_err().contains("\"SIGSEGV\""));
        assert!(stop_signal("").is_err());
    }

    #[test]
    fn readiness_values() {
        assert_eq!(readiness("tcp"), Ok(Readiness::Tcp));
        assert_eq!(readiness("supervisor"), Ok(Readiness::Supervisor));
        assert_eq!(
            readiness("http:/healthz"),
            Ok(Readiness::Http {
                path: "/healthz".into()
            })
        );
        assert!(
            readiness("http:healthz")
                .unwrap_err()
                .contains("\"http:healthz\"")
        );
        assert!(readiness("TCP").is_err());
        assert!(readiness("http://x/").is_err());
    }

    #[test]
    fn names_and_programs() {
        assert!(name("name", "app-1.v2_x").is_ok());
        assert!(name("name", "").is_err());
        assert!(name("name", "a b").unwrap_err().contains("' '"));
        assert!(program("app0").is_ok());
        assert!(program("group:app0").is_ok());
        assert!(program("a:b:c").is_err());
        assert!(program(":a").is_err());
        assert!(program("a b").is_err());
    }

    #[test]
    fn path_prefixes() {
        assert!(path_prefix("path_prefix", "/").is_ok());
        assert!(path_prefix("path_prefix", "/api/").is_ok());
        assert!(path_prefix("path_prefix", "api").is_err());
        assert!(path_prefix("never_wake", "/a b").is_err());
    }
}
