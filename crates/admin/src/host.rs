//! Which `Host` the admin API answers to: the defence against DNS rebinding.
//!
//! A page on `evil.example` can have its name re-resolved to 127.0.0.1 and then talk to the
//! loopback admin API as its own origin: its requests carry `Host: evil.example` and a matching
//! `Origin`, so the cross-origin check of [`crate::auth`] cannot see them, and a token does not
//! help either when it is unset. What the attacker cannot change is the name in `Host`, so
//! every request (GETs too: `/status` tells what runs where) must name this admin API:
//!
//! - the address the client connected to (the listen address, or for a wildcard listen the
//!   local address of the connection), as `ip:port` or `ip`;
//! - a loopback name: `localhost`, `*.localhost` (RFC 6761: resolved locally, never by DNS),
//!   `127.x.x.x`, `[::1]`;
//! - an entry of `[admin] hosts`.
//!
//! The port is ignored: a browser always sends the port it connected to, and the name alone is
//! what a rebinding attack cannot forge. Anything else is answered 421 Misdirected Request
//! (RFC 9110 §15.5.20: this server does not answer for that name), distinct from the 403 of a
//! cross-origin command so that an operator sees at once which rule refused.
//!
//! A request without `Host` is accepted only in HTTP/1.0, where `Host` is optional: a browser
//! always sends one, so such a request cannot come from a rebound page, and the client that
//! sent it could as well have written `Host: 127.0.0.1`. An HTTP/1.1 request without one, or
//! with several, is a 400 (RFC 9112 §3.2).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, StatusCode, Version, header};

use crate::AdminState;
use crate::routes::answer;

/// The local address of the connection a request came on; [`crate::serve`] adds it to every
/// request. Without it (the router driven without a socket) only loopback names and
/// `[admin] hosts` are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr(pub SocketAddr);

/// Why a request was refused before reaching any endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRefusal {
    /// HTTP/1.1 (or later) without `Host`.
    Missing,
    /// More than one `Host` header.
    Several,
    /// A `Host` (or request-target authority) that is not `host[:port]`.
    Malformed,
    /// A well-formed name that is not this admin API's (the host part, lower-cased).
    Foreign(String),
}

/// The host part of a `Host` value or of an authority.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostName {
    Ip(IpAddr),
    /// Lower-cased, without a trailing dot.
    Name(String),
}

/// Whether a request may reach the admin API: its `Host` (and the authority of an
/// absolute-form target, which stands for `Host` when present) must name it.
pub fn check(
    version: Version,
    headers: &HeaderMap,
    target_authority: Option<&str>,
    local: Option<SocketAddr>,
    hosts: &[String],
) -> Result<(), HostRefusal> {
    let mut values = headers.get_all(header::HOST).iter();
    let host = match (values.next(), values.next()) {
        (Some(_), Some(_)) => return Err(HostRefusal::Several),
        (Some(v), None) => Some(v.to_str().map_err(|_| HostRefusal::Malformed)?),
        (None, _) => None,
    };
    if host.is_none() && target_authority.is_none() && version > Version::HTTP_10 {
        return Err(HostRefusal::Missing);
    }
    for authority in host.into_iter().chain(target_authority) {
        let name = host_part(authority).ok_or(HostRefusal::Malformed)?;
        if !allowed(&name, local, hosts) {
            return Err(HostRefusal::Foreign(match name {
                HostName::Ip(ip) => ip.to_string(),
                HostName::Name(n) => n,
            }));
        }
    }
    Ok(())
}

/// `name`, `name:port`, `a.b.c.d[:port]` or `[v6][:port]` → the host part; `None` for
/// anything else (user info, a path, an empty name, a bad port).
fn host_part(authority: &str) -> Option<HostName> {
    let authority = authority.trim();
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (HostName::Ip(IpAddr::V6(v6.parse().ok()?)), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        let name = match host.parse::<IpAddr>() {
            Ok(ip @ IpAddr::V4(_)) => HostName::Ip(ip),
            // An unbracketed v6 address is not a valid Host.
            Ok(IpAddr::V6(_)) => return None,
            Err(_) if is_dns_name(host) => HostName::Name(host.to_ascii_lowercase()),
            Err(_) => return None,
        };
        (name, port)
    };
    match port {
        Some(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) => None,
        _ => Some(host),
    }
}

/// Labels of letters, digits, `-` and `_`, separated by single dots.
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn allowed(name: &HostName, local: Option<SocketAddr>, hosts: &[String]) -> bool {
    match name {
        HostName::Ip(ip) => {
            let ip = ip.to_canonical();
            ip.is_loopback()
                || local.is_some_and(|l| l.ip().to_canonical() == ip)
                || hosts.iter().any(|h| configured_ip(h) == Some(ip))
        }
        HostName::Name(n) => {
            n == "localhost"
                || n.ends_with(".localhost")
                || hosts.iter().any(|h| {
                    let h = h.strip_suffix('.').unwrap_or(h);
                    h.eq_ignore_ascii_case(n)
                })
        }
    }
}

/// An `[admin] hosts` entry that is an IP address (a v6 one with or without brackets).
fn configured_ip(entry: &str) -> Option<IpAddr> {
    let bare = entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .unwrap_or(entry);
    bare.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The middleware in front of every endpoint (unknown paths included).
pub async fn require(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let local = req.extensions().get::<LocalAddr>().map(|l| l.0);
    let verdict = check(
        req.version(),
        req.headers(),
        req.uri().authority().map(|a| a.as_str()),
        local,
        &state.hosts,
    );
    match verdict {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            tracing::warn!(path = req.uri().path(), ?refusal, "admin request refused");
            refuse(&refusal)
        }
    }
}

fn refuse(refusal: &HostRefusal) -> Response {
    match refusal {
        HostRefusal::Foreign(name) => answer(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected",
            format!(
                "this admin API does not answer for host {name:?} (DNS rebinding guard): use its \
                 address or localhost, or add the name to [admin] hosts"
            ),
        ),
        HostRefusal::Missing => answer(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "an HTTP/1.1 request needs a Host header",
        ),
        HostRefusal::Several => answer(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "several Host headers",
        ),
        HostRefusal::Malformed => answer(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "malformed Host: want HOST[:PORT]",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: &str = "127.0.0.1:9900";

    fn with_host(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::HOST, v.parse().unwrap());
        }
        h
    }

    fn verdict(host: &str, local: &str, hosts: &[&str]) -> Result<(), HostRefusal> {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        check(
            Version::HTTP_11,
            &with_host(&[host]),
            None,
            Some(local.parse().unwrap()),
            &hosts,
        )
    }

    #[test]
    fn loopback_names_and_the_listen_address_are_accepted() {
        for host in [
            "localhost",
            "localhost:9900",
            "LocalHost:1",
            "localhost.",
            "app.localhost:9900",
            "a.b.localhost",
            "127.0.0.1",
            "127.0.0.1:9900",
            "127.8.9.10:80",
            "[::1]",
            "[::1]:9900",
            "[::ffff:127.0.0.1]:9900",
        ] {
            assert_eq!(verdict(host, LOCAL, &[]), Ok(()), "{host}");
        }
    }

    #[test]
    fn the_address_the_client_connected_to_is_accepted() {
        assert_eq!(verdict("10.0.0.5:9900", "10.0.0.5:9900", &[]), Ok(()));
        assert_eq!(verdict("10.0.0.5", "10.0.0.5:9900", &[]), Ok(()));
        // A wildcard listen on a dual-stack socket sees v4 clients as mapped addresses.
        assert_eq!(
            verdict("10.0.0.5:9900", "[::ffff:10.0.0.5]:9900", &[]),
            Ok(())
        );
        assert_eq!(verdict("[fd00::5]:9900", "[fd00::5]:9900", &[]), Ok(()));
        assert_eq!(
            verdict("10.0.0.6:9900", "10.0.0.5:9900", &[]),
            Err(HostRefusal::Foreign("10.0.0.6".into()))
        );
    }

    #[test]
    fn foreign_names_are_refused() {
        for (host, name) in [
            ("evil.example", "evil.example"),
            ("Evil.Example:9900", "evil.example"),
            ("localhost.evil.example", "localhost.evil.example"),
            ("evillocalhost", "evillocalhost"),
            ("127.0.0.1.nip.io:9900", "127.0.0.1.nip.io"),
            ("0.0.0.0:9900", "0.0.0.0"),
        ] {
            assert_eq!(
                verdict(host, LOCAL, &[]),
                Err(HostRefusal::Foreign(name.into())),
                "{host}"
            );
        }
    }

    #[test]
    fn configured_hosts_are_accepted_whatever_the_port_and_case() {
        let hosts = ["rouse.internal", "10.1.2.3", "[fd00::7]"];
        for host in [
            "rouse.internal",
            "rouse.internal:9900",
            "ROUSE.Internal:80",
            "rouse.internal.",
            "10.1.2.3:9900",
            "[fd00::7]:1",
        ] {
            assert_eq!(verdict(host, LOCAL, &hosts), Ok(()), "{host}");
        }
        assert_eq!(
            verdict("other.internal", LOCAL, &hosts),
            Err(HostRefusal::Foreign("other.internal".into()))
        );
        assert_eq!(
            verdict("sub.rouse.internal", LOCAL, &hosts),
            Err(HostRefusal::Foreign("sub.rouse.internal".into()))
        );
    }

    #[test]
    fn malformed_hosts_are_bad_requests() {
        for host in [
            "",
            "user@localhost",
            "localhost:",
            "localhost:x",
            "localhost/x",
            "::1",
            "[::1",
            "[::1]x",
            "[localhost]",
            "a..b",
            ".",
        ] {
            assert_eq!(
                verdict(host, LOCAL, &[]),
                Err(HostRefusal::Malformed),
                "{host:?}"
            );
        }
        let mut bytes = HeaderMap::new();
        bytes.insert(
            header::HOST,
            http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert_eq!(
            check(Version::HTTP_11, &bytes, None, None, &[]),
            Err(HostRefusal::Malformed)
        );
    }

    #[test]
    fn several_hosts_are_refused_even_if_one_is_ours() {
        let h = with_host(&["localhost", "evil.example"]);
        assert_eq!(
            check(Version::HTTP_11, &h, None, None, &[]),
            Err(HostRefusal::Several)
        );
    }

    #[test]
    fn without_host_only_http_1_0_passes() {
        let none = HeaderMap::new();
        assert_eq!(check(Version::HTTP_10, &none, None, None, &[]), Ok(()));
        assert_eq!(check(Version::HTTP_09, &none, None, None, &[]), Ok(()));
        assert_eq!(
            check(Version::HTTP_11, &none, None, None, &[]),
            Err(HostRefusal::Missing)
        );
    }

    #[test]
    fn an_absolute_form_target_is_checked_too() {
        let h = with_host(&["localhost"]);
        assert_eq!(
            check(Version::HTTP_11, &h, Some("evil.example"), None, &[]),
            Err(HostRefusal::Foreign("evil.example".into()))
        );
        assert_eq!(
            check(Version::HTTP_11, &h, Some("127.0.0.1:9900"), None, &[]),
            Ok(())
        );
        assert_eq!(
            check(
                Version::HTTP_10,
                &HeaderMap::new(),
                Some("evil.example"),
                None,
                &[]
            ),
            Err(HostRefusal::Foreign("evil.example".into()))
        );
    }
}
