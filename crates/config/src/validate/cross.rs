//! Checks between sections: things each fine on its own that cannot work together.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::Range;

use toml::Spanned;

use super::{CheckedUpstream, Context};
use crate::model::{ServerAddress, SupervisorRef};

pub(super) fn check(
    listen: &[Spanned<SocketAddr>],
    admin: Option<&Spanned<SocketAddr>>,
    upstreams: &[CheckedUpstream],
    cx: &mut Context<'_>,
) {
    let duplicated = duplicate_names(upstreams, cx);
    routes(upstreams, cx);
    addresses(upstreams, cx);
    own_addresses(listen, admin, upstreams, cx);
    programs(upstreams, &duplicated, cx);
}

/// Names identify upstreams in the admin API and in metrics. Returns the duplicated names, so
/// later checks do not report the same mistake again under another guise.
fn duplicate_names<'u>(
    upstreams: &'u [CheckedUpstream],
    cx: &mut Context<'_>,
) -> BTreeSet<&'u str> {
    let mut first: BTreeMap<&str, &Range<usize>> = BTreeMap::new();
    let mut duplicated = BTreeSet::new();
    for upstream in upstreams {
        let name = upstream.config.name.as_str();
        match first.get(name) {
            Some(span) => {
                let line = cx.line(span);
                cx.error(
                    upstream.name_span.clone(),
                    format!("duplicate upstream name \"{name}\" (first defined at line {line})"),
                );
                duplicated.insert(name);
            }
            None => {
                first.insert(name, &upstream.name_span);
            }
        }
    }
    duplicated
}

/// Two upstreams matching the same host and path prefix: the second could never be reached.
fn routes(upstreams: &[CheckedUpstream], cx: &mut Context<'_>) {
    let mut seen: BTreeMap<(Option<&str>, &str), &CheckedUpstream> = BTreeMap::new();
    for upstream in upstreams.iter().filter(|u| u.routable) {
        let prefix = upstream.config.path_prefix.as_str();
        if upstream.hosts.is_empty() {
            if let Some(first) = seen.get(&(None, prefix)) {
                let line = cx.line(&first.name_span);
                let span = upstream
                    .path_prefix_span
                    .clone()
                    .unwrap_or_else(|| upstream.name_span.clone());
                cx.error(
                    span,
                    format!(
                        "two default upstreams (no hosts) with path_prefix \"{prefix}\": \"{}\" \
                         (line {line}) and \"{}\"",
                        first.config.name, upstream.config.name
                    ),
                );
            } else {
                seen.insert((None, prefix), upstream);
            }
        }
        for host in &upstream.hosts {
            let key = (Some(host.get_ref().as_str()), prefix);
            if let Some(first) = seen.get(&key) {
                let line = cx.line(&first.name_span);
                cx.error(
                    host.span(),
                    format!(
                        "two upstreams for host \"{}\" with path_prefix \"{prefix}\": \"{}\" \
                         (line {line}) and \"{}\"",
                        host.get_ref(),
                        first.config.name,
                        upstream.config.name
                    ),
                );
            } else {
                seen.insert(key, upstream);
            }
        }
    }
}

/// A server listed twice in one upstream would be counted twice; an address shared by two
/// embedded upstreams means two processes fighting for one port. (Static and supervisord servers
/// may be shared: rouse does not start them, so nothing fights.)
fn addresses(upstreams: &[CheckedUpstream], cx: &mut Context<'_>) {
    let mut embedded: BTreeMap<ServerAddress, (&str, Range<usize>)> = BTreeMap::new();
    for upstream in upstreams {
        let name = upstream.config.name.as_str();
        let is_embedded =
            upstream.kind_known && upstream.config.supervisor == SupervisorRef::Embedded;
        let mut own: BTreeMap<ServerAddress, Range<usize>> = BTreeMap::new();
        for address in upstream.servers.iter().filter_map(|s| s.address.as_ref()) {
            let value = same_place(address.get_ref());
            if let Some(first) = own.get(&value) {
                let line = cx.line(first);
                cx.error(
                    address.span(),
                    format!(
                        "address {value} is listed twice in upstream \"{name}\" (also on line {line})"
                    ),
                );
                continue;
            }
            own.insert(value.clone(), address.span());
            if !is_embedded {
                continue;
            }
            match embedded.get(&value) {
                Some((other, first)) => {
                    let line = cx.line(first);
                    cx.error(
                        address.span(),
                        format!(
                            "address {value} is also used by upstream \"{other}\" (line {line}); \
                             both are run by the embedded supervisor, so two processes would \
                             compete for the port"
                        ),
                    );
                }
                None => {
                    embedded.insert(value, (name, address.span()));
                }
            }
        }
    }
}

/// rouse's own listen addresses: the proxy and the admin API cannot share one, and a server
/// there would send requests back into rouse forever.
fn own_addresses(
    listen: &[Spanned<SocketAddr>],
    admin: Option<&Spanned<SocketAddr>>,
    upstreams: &[CheckedUpstream],
    cx: &mut Context<'_>,
) {
    let clash = admin.and_then(|admin| {
        listen
            .iter()
            .find(|l| binds_clash(*l.get_ref(), *admin.get_ref()))
            .map(|proxy| (admin, proxy))
    });
    if let Some((admin, proxy)) = clash {
        let line = cx.line(&proxy.span());
        cx.error(
            admin.span(),
            format!(
                "admin listen {} clashes with the proxy listen address {} (line {line})",
                admin.get_ref(),
                proxy.get_ref()
            ),
        );
    }
    let own: Vec<(&str, &Spanned<SocketAddr>)> = listen
        .iter()
        .map(|l| ("proxy", l))
        .chain(admin.map(|a| ("admin", a)))
        .collect();
    for upstream in upstreams {
        for address in upstream.servers.iter().filter_map(|s| s.address.as_ref()) {
            if let Some((what, _)) = own
                .iter()
                .find(|(_, own)| reaches_server(*own.get_ref(), address.get_ref()))
            {
                cx.error(
                    address.span(),
                    format!(
                        "address {} is rouse's own {what} listen address: requests would loop \
                         back into rouse",
                        address.get_ref()
                    ),
                );
            }
        }
    }
}

/// The key under which two addresses are the same server: `localhost:P` is `127.0.0.1:P`
/// (the one name known without a resolver), so it is not listed twice under two spellings.
fn same_place(address: &ServerAddress) -> ServerAddress {
    match address {
        ServerAddress::Name { host, port } if host == "localhost" => {
            ServerAddress::Ip(SocketAddr::from(([127, 0, 0, 1], *port)))
        }
        other => other.clone(),
    }
}

/// Whether a server address is one of rouse's own listeners. `localhost` is the one name known
/// without asking a resolver.
fn reaches_server(own: SocketAddr, server: &ServerAddress) -> bool {
    match server {
        ServerAddress::Ip(address) => reaches(own, *address),
        ServerAddress::Name { host, port } if host == "localhost" => {
            reaches(own, SocketAddr::from(([127, 0, 0, 1], *port)))
                || reaches(
                    own,
                    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, *port)),
                )
        }
        ServerAddress::Name { .. } | ServerAddress::Unix(_) => false,
    }
}

/// Whether two listening sockets would fail to bind together. Port 0 asks the kernel for a free
/// port, so it never clashes.
pub(super) fn binds_clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Whether connecting to `target` reaches what listens on `listen`. Only local addresses can:
/// the same address on another machine is another server.
fn reaches(listen: SocketAddr, target: SocketAddr) -> bool {
    listen.port() == target.port()
        && listen.port() != 0
        && (listen.ip() == target.ip()
            || (listen.ip().is_unspecified() && target.ip().is_loopback()))
}

/// Two servers driving one supervisord program would start and stop each other's process.
fn programs(upstreams: &[CheckedUpstream], duplicated: &BTreeSet<&str>, cx: &mut Context<'_>) {
    let mut seen: BTreeMap<(&str, &str), (&str, usize, Range<usize>)> = BTreeMap::new();
    for upstream in upstreams {
        if duplicated.contains(upstream.config.name.as_str()) {
            continue;
        }
        for (server, checked) in upstream.config.servers.iter().zip(&upstream.servers) {
            let SupervisorRef::Supervisord(supervisor) = &server.supervisor else {
                continue;
            };
            let key = (supervisor.as_str(), server.program.as_str());
            match seen.get(&key) {
                Some((other, index, span)) => {
                    let line = cx.line(span);
                    cx.error(
                        checked.program_span.clone(),
                        format!(
                            "program \"{}\" of supervisor \"{supervisor}\" is already driven by \
                             upstream \"{other}\" server {index} (line {line})",
                            server.program
                        ),
                    );
                }
                None => {
                    seen.insert(
                        key,
                        (
                            upstream.config.name.as_str(),
                            server.index,
                            checked.program_span.clone(),
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn clashing_binds() {
        assert!(binds_clash(addr("127.0.0.1:80"), addr("127.0.0.1:80")));
        assert!(binds_clash(addr("0.0.0.0:80"), addr("127.0.0.1:80")));
        assert!(!binds_clash(addr("127.0.0.1:80"), addr("127.0.0.2:80")));
        assert!(!binds_clash(addr("127.0.0.1:80"), addr("127.0.0.1:81")));
        assert!(!binds_clash(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
        assert!(!binds_clash(addr("0.0.0.0:80"), addr("[::1]:80")));
    }

    #[test]
    fn reaching_own_listener() {
        assert!(reaches(addr("127.0.0.1:80"), addr("127.0.0.1:80")));
        assert!(reaches(addr("0.0.0.0:80"), addr("127.0.0.1:80")));
        assert!(!reaches(addr("0.0.0.0:80"), addr("10.0.0.5:80")));
        assert!(!reaches(addr("127.0.0.1:80"), addr("127.0.0.1:81")));
    }
}
