//! `[cluster]`: several rouse replicas coordinated through etcd.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::Context;
use super::connect;
use super::limits::duration;
use crate::duration::{FileDuration, format_duration};
use crate::file::{FileCluster, Section};
use crate::model::ClusterConfig;
use crate::values;

const LEASE_TTL: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(300));
const TIMEOUT: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(60));
const DEFAULT_LEASE_TTL: u64 = 5;
/// Under a third of the default lease, as the rule below asks of every timeout: 2s would not
/// be (5s / 3 is 1.67s).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_NAME: usize = 64;
const MAX_ID: usize = 128;

pub(crate) fn cluster(section: &Section<FileCluster>, cx: &mut Context<'_>) -> ClusterConfig {
    let file = &section.value;
    let etcd = endpoints(section, cx);
    let https = etcd.iter().any(|url| values::is_https(url));

    let name = match &file.name {
        Some(name) => {
            if let Err(message) = key_name(name.get_ref(), MAX_NAME, "") {
                cx.error(name.span(), format!("name: {message}"));
            }
            name.get_ref().clone()
        }
        None => {
            if !section.is_rejected("name") {
                cx.error(
                    section.span.clone(),
                    "[cluster] needs a name, shared by the replicas of one service \
                     (their etcd keys are under /rouse/NAME/), e.g. name = \"edge\"",
                );
            }
            String::new()
        }
    };
    let id = file.id.as_ref().map(|id| {
        if let Err(message) = key_name(id.get_ref(), MAX_ID, "/:") {
            cx.error(id.span(), format!("id: {message}"));
        }
        id.get_ref().clone()
    });

    let lease_ttl = between(
        "lease_ttl",
        &file.lease_ttl,
        Duration::from_secs(DEFAULT_LEASE_TTL),
        LEASE_TTL,
        cx,
    );
    let timeout = between("timeout", &file.timeout, DEFAULT_TIMEOUT, TIMEOUT, cx);
    // A keep-alive goes out every lease_ttl / 3; one that takes up to `timeout` must still be
    // answered before the lease the previous one renewed is counted as lost, or a slow but
    // healthy etcd makes the leader stop leading.
    if timeout.saturating_mul(3) >= lease_ttl {
        let third = format_duration(lease_ttl / 3);
        match (&file.timeout, &file.lease_ttl) {
            (Some(at), _) => cx.error(
                at.span(),
                format!(
                    "timeout: {} must be less than a third of lease_ttl ({}): under {third}",
                    format_duration(timeout),
                    format_duration(lease_ttl)
                ),
            ),
            (None, Some(at)) => cx.error(
                at.span(),
                format!(
                    "lease_ttl: {} must be more than three times timeout (default {}): \
                     raise it, or set timeout under {third}",
                    format_duration(lease_ttl),
                    format_duration(timeout)
                ),
            ),
            // Both defaulted: the defaults keep the rule.
            (None, None) => {}
        }
    }

    credentials(section, cx);
    let ca_file = tls_file(
        "ca_file",
        &file.ca_file,
        section,
        https,
        connect::ca_file,
        cx,
    );
    // A client certificate file holds PEM certificates, as a CA file does.
    let cert_file = tls_file(
        "cert_file",
        &file.cert_file,
        section,
        https,
        connect::ca_file,
        cx,
    );
    let key_file = tls_file(
        "key_file",
        &file.key_file,
        section,
        https,
        connect::key_file,
        cx,
    );
    // Half a client certificate is a forgotten line, never a deliberate setting.
    for (given, missing) in [("cert_file", "key_file"), ("key_file", "cert_file")] {
        if section.keys.contains_key(given)
            && !section.keys.contains_key(missing)
            && !section.is_rejected(missing)
        {
            cx.error(
                section.key_span(given),
                format!("{given} is set but {missing} is missing: give both or neither"),
            );
        }
    }

    ClusterConfig {
        etcd,
        name,
        id,
        lease_ttl,
        timeout,
        user: file.user.as_ref().map(|u| u.get_ref().clone()),
        password: file.password.as_ref().map(|p| p.get_ref().clone()),
        ca_file,
        cert_file,
        key_file,
    }
}

/// `etcd`: at least one `http://` or `https://` URL, each once, all of one scheme.
fn endpoints(section: &Section<FileCluster>, cx: &mut Context<'_>) -> Vec<String> {
    let Some(list) = &section.value.etcd else {
        if !section.is_rejected("etcd") {
            cx.error(
                section.span.clone(),
                "[cluster] needs etcd, the etcd servers' client URLs, e.g. \
                 etcd = [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\"]",
            );
        }
        return Vec::new();
    };
    if list.get_ref().is_empty() {
        cx.error(
            list.span(),
            "etcd: at least one URL is needed, e.g. [\"http://127.0.0.1:2379\"]",
        );
    }
    let mut out: Vec<String> = Vec::new();
    for written in list.get_ref() {
        match endpoint(written.get_ref()) {
            Ok(url) if out.contains(&url) => {
                cx.error(written.span(), format!("etcd: {url:?} is listed twice"))
            }
            Ok(url) => out.push(url),
            Err(message) => cx.error(written.span(), format!("etcd: {message}")),
        }
    }
    // One client reaches them all with one TLS setting: etcd-client refuses an http:// URL
    // once TLS is on, so a mixed list would never connect.
    let https = out.iter().filter(|url| values::is_https(url)).count();
    if https != 0 && https != out.len() {
        cx.error(
            list.span(),
            "etcd: all URLs http:// or all https://, not both: one client with one TLS \
             setting reaches them all",
        );
    }
    out
}

/// An etcd client URL, `http(s)://HOST[:PORT]` with at most a `/` after it; the scheme and
/// host lower-cased, the trailing `/` dropped, so the same server is not listed twice.
fn endpoint(text: &str) -> Result<String, String> {
    let shown = values::redact_url(text);
    let expected = "expected \"http://HOST:PORT\" or \"https://HOST:PORT\", e.g. \
                    \"http://10.0.0.1:2379\"";
    let lower = text.to_ascii_lowercase();
    let Some((scheme, rest)) = ["http://", "https://"].into_iter().find_map(|scheme| {
        lower
            .strip_prefix(scheme)
            .map(|_| (scheme, &text[scheme.len()..]))
    }) else {
        return Err(format!("invalid URL {shown:?}: {expected}"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('@') {
        return Err(format!(
            "invalid URL {shown:?}: put credentials in user and password, not in the URL"
        ));
    }
    if authority.is_empty()
        || authority.contains(['/', '?', '#'])
        || authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("invalid URL {shown:?}: {expected}"));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, port)) if port.starts_with(':') => (host, Some(&port[1..])),
            _ => return Err(format!("invalid URL {shown:?}: {expected}")),
        },
        None => match authority.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(format!(
                    "invalid URL {shown:?}: write an IPv6 address in brackets, as in \
                     \"http://[::1]:2379\""
                ));
            }
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.parse::<IpAddr>().is_err() {
        values::host_name(host).map_err(|why| format!("invalid URL {shown:?}: {why}"))?;
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p != 0)
    {
        return Err(format!("invalid URL {shown:?}: bad port {port:?}"));
    }
    Ok(format!("{scheme}{}", authority.to_ascii_lowercase()))
}

/// `name` and `id` become etcd keys (`/rouse/NAME/members/ID`) and metric values: letters,
/// digits, `.`, `_`, `-`, and the `extra` characters.
fn key_name(text: &str, max: usize, extra: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.len() > max {
        return Err(format!("{text:?} is longer than {max} characters"));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c) || extra.contains(*c)))
    {
        let also = extra
            .chars()
            .map(|c| format!(", '{c}'"))
            .collect::<String>();
        return Err(format!(
            "invalid {text:?}: {bad:?} is not allowed; use letters, digits, '.', '_', '-'{also}"
        ));
    }
    Ok(())
}

/// A duration within `min..=max`, or `default`.
fn between(
    key: &str,
    value: &Option<Spanned<FileDuration>>,
    default: Duration,
    (min, max): (Duration, Duration),
    cx: &mut Context<'_>,
) -> Duration {
    let Some(given) = value else {
        return default;
    };
    let d = duration(key, value, 0, max, cx);
    if given.get_ref().0 > max {
        // Reported as too long already.
        return default;
    }
    if d < min {
        cx.error(
            given.span(),
            format!(
                "{key}: {} is too short (at least {})",
                format_duration(d),
                format_duration(min)
            ),
        );
        return default;
    }
    d
}

/// `user` and `password`: both or neither, neither empty.
fn credentials(section: &Section<FileCluster>, cx: &mut Context<'_>) {
    let file = &section.value;
    for (key, value) in [("user", &file.user), ("password", &file.password)] {
        if let Some(value) = value.as_ref().filter(|v| v.get_ref().is_empty()) {
            cx.error(value.span(), format!("{key}: must not be empty"));
        }
    }
    match (&file.user, &file.password) {
        (Some(_), None) if !section.is_rejected("password") => cx.error(
            section.key_span("user"),
            "user is set but password is missing: give both or neither",
        ),
        (None, Some(_)) if !section.is_rejected("user") => cx.error(
            section.key_span("password"),
            "password is set but user is missing: give both or neither",
        ),
        _ => {}
    }
}

/// A PEM file for TLS to etcd: there and readable (found at load, not at the first connection
/// after the operator has moved on), and only with `https://` endpoints.
fn tls_file(
    key: &str,
    value: &Option<Spanned<String>>,
    section: &Section<FileCluster>,
    https: bool,
    check: fn(&str) -> Result<(), String>,
    cx: &mut Context<'_>,
) -> Option<PathBuf> {
    let value = value.as_ref()?;
    if !https {
        // Said when there are endpoints to judge by: none at all is reported on its own.
        if !section
            .value
            .etcd
            .as_ref()
            .is_none_or(|l| l.get_ref().is_empty())
        {
            cx.error(
                section.key_span(key),
                format!("{key} is only for https:// endpoints; etcd is reached without TLS"),
            );
        }
    } else if let Err(message) = check(value.get_ref()) {
        cx.error(value.span(), format!("{key}: {message}"));
    }
    Some(PathBuf::from(value.get_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalized() {
        assert_eq!(
            endpoint("http://10.0.0.1:2379").unwrap(),
            "http://10.0.0.1:2379"
        );
        assert_eq!(
            endpoint("HTTPS://Etcd.Example:2379/").unwrap(),
            "https://etcd.example:2379"
        );
        assert_eq!(endpoint("http://[::1]:2379").unwrap(), "http://[::1]:2379");
        assert_eq!(endpoint("http://etcd").unwrap(), "http://etcd");
        for bad in [
            "10.0.0.1:2379",
            "unix:///run/etcd.sock",
            "http://",
            "http://a:b@h:2379",
            "http://h:2379/v3",
            "http://h:0",
            "http://h:x",
            "http://::1:2379",
            "http://h 1:2379",
        ] {
            assert!(endpoint(bad).is_err(), "{bad}");
        }
        assert!(
            !endpoint("http://u:secret@h:1")
                .unwrap_err()
                .contains("secret")
        );
    }

    #[test]
    fn names_and_ids() {
        assert!(key_name("edge-1.prod_a", 64, "").is_ok());
        assert!(key_name("edge-1/0.0.0.0:8080", 128, "/:").is_ok());
        assert!(key_name("a/b", 64, "").is_err());
        assert!(key_name("", 64, "").is_err());
        assert!(key_name(&"a".repeat(65), 64, "").is_err());
        assert!(key_name(&"a".repeat(64), 64, "").is_ok());
        assert!(key_name("a b", 128, "/:").is_err());
    }
}
