//! `address` of a `[[upstream.server]]`: `IP:PORT`, `[IPv6]:PORT`, `HOST:PORT`,
//! `unix:/absolute/path`, optionally behind `https://` (TLS) or `http://`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::address::ServerAddress;

/// The longest unix socket path the kernel takes (`sun_path` is 108 bytes with its NUL).
const MAX_UNIX_PATH: usize = 107;
/// RFC 1035: a whole name, and one label.
const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;

const EXAMPLES: &str = "write \"IP:PORT\", \"HOST:PORT\", \"unix:/path/to.sock\" or \
                        \"https://HOST:PORT\"";

/// The address and whether it asks for TLS (`https://`).
pub fn server_address(text: &str) -> Result<(ServerAddress, bool), String> {
    let bad = |why: &str| format!("invalid address \"{text}\": {why}");
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace"));
    }
    if let Some(path) = text.strip_prefix("unix:") {
        return unix(path).map(|a| (a, false)).map_err(|why| bad(&why));
    }
    let (rest, tls) = if let Some(rest) = text.strip_prefix("https://") {
        (rest, true)
    } else if let Some(rest) = text.strip_prefix("http://") {
        (rest, false)
    } else if text.contains("://") {
        return Err(bad(&format!("unknown scheme; {EXAMPLES}")));
    } else {
        (text, false)
    };
    if rest.starts_with("unix:") {
        return Err(bad(
            "TLS or http:// over a unix socket is not supported; write \"unix:/path\"",
        ));
    }
    // "https://host:8443/" is how people copy URLs; anything after the slash is not an address.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err(bad("a server address has no path, query or credentials"));
    }
    let default_port = if tls { Some(443) } else { None };
    host_port(rest, default_port)
        .map(|a| (a, tls))
        .map_err(|why| bad(&why))
}

/// The address alone, as written in a config (`https://` is the server's `tls`, not its
/// address, so it is refused here).
impl std::str::FromStr for ServerAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match server_address(text)? {
            (address, false) => Ok(address),
            (_, true) => Err(format!(
                "\"{text}\" asks for TLS, which is not part of an address"
            )),
        }
    }
}

fn unix(path: &str) -> Result<ServerAddress, String> {
    let path = path.strip_prefix("//").unwrap_or(path);
    if !path.starts_with('/') {
        return Err("the socket path must be absolute, as in \"unix:/run/app/app.sock\"".into());
    }
    if path.len() > MAX_UNIX_PATH {
        return Err(format!(
            "the socket path is {} bytes long; the kernel takes at most {MAX_UNIX_PATH}",
            path.len()
        ));
    }
    if path.ends_with('/') {
        return Err("the socket path names a directory".into());
    }
    Ok(ServerAddress::Unix(PathBuf::from(path)))
}

fn host_port(text: &str, default_port: Option<u16>) -> Result<ServerAddress, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return ip(address);
    }
    if let Some(ip_text) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return match (ip_text.parse::<IpAddr>(), default_port) {
            (Ok(a), Some(port)) => ip(SocketAddr::new(a, port)),
            _ => Err(format!("no port; {EXAMPLES}")),
        };
    }
    if let Ok(address) = text.parse::<IpAddr>() {
        return match (address, default_port) {
            (IpAddr::V4(_), Some(port)) => ip(SocketAddr::new(address, port)),
            (IpAddr::V6(_), _) => Err("write an IPv6 address as [IP]:PORT".into()),
            (IpAddr::V4(_), None) => Err(format!("no port; {EXAMPLES}")),
        };
    }
    let (host, port) = match (text.rsplit_once(':'), default_port) {
        (Some((host, port)), _) => {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("bad port \"{port}\"; {EXAMPLES}"))?;
            (host, port)
        }
        (None, Some(port)) => (text, port),
        (None, None) => return Err(format!("no port; {EXAMPLES}")),
    };
    if port == 0 {
        return Err("port 0 is not a port a server can be reached on".into());
    }
    if host.contains(':') {
        return Err("write an IPv6 address as [IP]:PORT".into());
    }
    let host = host_name(host)?;
    Ok(ServerAddress::Name { host, port })
}

fn ip(address: SocketAddr) -> Result<ServerAddress, String> {
    if address.port() == 0 {
        return Err("port 0 is not a port a server can be reached on".into());
    }
    Ok(ServerAddress::Ip(address))
}

/// A DNS name (letters, digits, `-` and `_` in dot-separated labels), lower-cased; also the
/// check for `tls_server_name`.
pub fn host_name(host: &str) -> Result<String, String> {
    if host.is_empty() {
        return Err("no host".into());
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.len() > MAX_NAME {
        return Err(format!(
            "host name is {} characters long; at most {MAX_NAME}",
            host.len()
        ));
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(format!("\"{host}\" has an empty label (two dots)"));
        }
        if label.len() > MAX_LABEL {
            return Err(format!(
                "\"{label}\" is longer than {MAX_LABEL} characters (one label of a host name)"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "\"{host}\" is not a host name ({c:?} is not allowed; use letters, digits, \
                 '-' and '.')"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "\"{host}\" is not a host name (a label starts or ends with '-')"
            ));
        }
    }
    // "300.1.1.1" is neither an IP address nor a name anyone means.
    if host
        .split('.')
        .all(|l| l.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!("\"{host}\" is not a valid IP address"));
    }
    Ok(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> (ServerAddress, bool) {
        server_address(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> String {
        server_address(text).expect_err(text)
    }

    #[test]
    fn every_kind_is_read_and_printed_back() {
        let cases = [
            ("127.0.0.1:9101", "127.0.0.1:9101", false),
            ("[::1]:9101", "[::1]:9101", false),
            ("App.Internal:8000", "app.internal:8000", false),
            ("localhost:8000", "localhost:8000", false),
            ("unix:/run/app/app.sock", "unix:/run/app/app.sock", false),
            ("unix:///run/app.sock", "unix:/run/app.sock", false),
            ("https://10.0.0.5:8443", "10.0.0.5:8443", true),
            ("https://api.example.com", "api.example.com:443", true),
            (
                "https://api.example.com:8443/",
                "api.example.com:8443",
                true,
            ),
            ("https://[::1]", "[::1]:443", true),
            ("http://app:80", "app:80", false),
            ("svc_1.local:80", "svc_1.local:80", false),
        ];
        for (text, shown, tls) in cases {
            let (address, t) = ok(text);
            assert_eq!((address.to_string().as_str(), t), (shown, tls), "{text}");
        }
    }

    #[test]
    fn bad_addresses_say_why() {
        let cases = [
            ("unix:run/app.sock", "must be absolute"),
            ("unix:", "must be absolute"),
            ("https://unix:/run/a.sock", "unix socket"),
            ("ftp://host:21", "unknown scheme"),
            ("app.internal", "no port"),
            ("app.internal:http", "bad port"),
            ("app.internal:0", "port 0"),
            ("127.0.0.1:0", "port 0"),
            ("-bad.example:80", "a label starts or ends"),
            ("a..b:80", "empty label"),
            ("a b:80", "whitespace"),
            ("bad!name:80", "not a host name"),
            ("300.1.1.1:80", "not a valid IP"),
            ("::1:80", "IPv6"),
            ("https://host:443/api", "no path"),
            ("user@host:80", "credentials"),
        ];
        for (text, want) in cases {
            let message = err(text);
            assert!(message.contains(want), "{text}: {message}");
        }
        let long = format!("unix:/{}", "a".repeat(120));
        assert!(err(&long).contains("at most 107"));
        let label = format!("{}.example:80", "a".repeat(64));
        assert!(err(&label).contains("longer than 63"));
    }
}
