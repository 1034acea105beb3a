//! `[proxy.acme]`: automatic certificates.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::Context;
use super::limits::{DAY, positive};
use crate::file::{FileAcme, Section};
use crate::model::{AcmeConfig, LETS_ENCRYPT_DIRECTORY};

/// Where the account and certificates go when `dir` is not set (as certbot's /etc/letsencrypt).
pub(crate) const DEFAULT_DIR: &str = "/var/lib/rouse/acme";

/// Let's Encrypt's own limit of names on one certificate.
const MAX_DOMAINS: usize = 100;

pub(crate) fn acme(section: &Section<FileAcme>, cx: &mut Context<'_>) -> AcmeConfig {
    let file = &section.value;
    let email = file.email.as_ref().map(|email| {
        if let Err(message) = check_email(email.get_ref()) {
            cx.error(email.span(), format!("email: {message}"));
        }
        email.get_ref().clone()
    });
    let directory = match &file.directory {
        Some(url) => {
            if let Err(message) = check_directory(url.get_ref()) {
                cx.error(url.span(), format!("directory: {message}"));
            }
            url.get_ref().clone()
        }
        None => LETS_ENCRYPT_DIRECTORY.to_owned(),
    };
    let domains = domains(section, cx);
    let dir = path("dir", &file.dir, cx).unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
    let ca_file = path("ca_file", &file.ca_file, cx);
    // Ninety days is a CA's longest lifetime now; a year is a typo.
    let renew_before = positive(
        "renew_before",
        &file.renew_before,
        30 * DAY.as_secs(),
        365 * DAY,
        cx,
    );
    AcmeConfig {
        email,
        directory,
        domains,
        dir,
        ca_file,
        renew_before,
    }
}

fn domains(section: &Section<FileAcme>, cx: &mut Context<'_>) -> Vec<String> {
    let Some(list) = &section.value.domains else {
        if !section.is_rejected("domains") {
            cx.error(
                section.span.clone(),
                "[proxy.acme] needs domains, e.g. domains = [\"example.com\", \"www.example.com\"]",
            );
        }
        return Vec::new();
    };
    if list.get_ref().is_empty() {
        cx.error(
            list.span(),
            "domains: at least one name is needed, e.g. [\"example.com\"]",
        );
    }
    if list.get_ref().len() > MAX_DOMAINS {
        cx.error(
            list.span(),
            format!("domains: at most {MAX_DOMAINS} names fit on one certificate"),
        );
    }
    let mut out: Vec<String> = Vec::new();
    for domain in list.get_ref() {
        match dns_name(domain.get_ref()) {
            Ok(name) if out.contains(&name) => {
                cx.error(domain.span(), format!("domains: {name:?} is listed twice"));
            }
            Ok(name) => out.push(name),
            Err(message) => cx.error(domain.span(), format!("domains: {message}")),
        }
    }
    out
}

/// A path key: not empty, no NUL.
fn path(key: &str, value: &Option<Spanned<String>>, cx: &mut Context<'_>) -> Option<PathBuf> {
    let value = value.as_ref()?;
    let text = value.get_ref();
    if text.trim().is_empty() {
        // SPEC writes `ca_file = ""` for "none".
        if key == "ca_file" {
            return None;
        }
        cx.error(value.span(), format!("{key}: must not be empty"));
        return None;
    }
    if text.contains('\0') {
        cx.error(value.span(), format!("{key}: contains a NUL byte"));
        return None;
    }
    Some(PathBuf::from(text))
}

impl AcmeConfig {
    /// Relative `dir` and `ca_file` are taken from the directory of the config file at
    /// `source`, as nginx does with its prefix: the same file means the same place whatever
    /// directory rouse was started from.
    pub fn resolve_paths(&mut self, source: &Path) {
        let base = source.parent().unwrap_or(Path::new(""));
        if self.dir.is_relative() {
            self.dir = base.join(&self.dir);
        }
        if let Some(ca) = self.ca_file.as_mut().filter(|ca| ca.is_relative()) {
            *ca = base.join(&*ca);
        }
    }
}

/// `local@domain`, no spaces, the domain a DNS name: what a CA accepts as a `mailto:` contact.
fn check_email(text: &str) -> Result<(), String> {
    let shape = format!("invalid email {text:?}: expected an address such as \"ops@example.com\"");
    let Some((local, domain)) = text.rsplit_once('@') else {
        return Err(shape);
    };
    let bad_local = local.is_empty()
        || local.len() > 64
        || local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>(),;:\"[]\\@".contains(c));
    if bad_local || dns_name(domain).is_err() {
        return Err(shape);
    }
    Ok(())
}

/// An `https://` URL; `http://` only to a loopback host (a test CA on this machine).
fn check_directory(text: &str) -> Result<(), String> {
    let (scheme, rest) = text.split_once("://").ok_or_else(|| {
        format!("invalid URL {text:?}: expected e.g. \"{LETS_ENCRYPT_DIRECTORY}\"")
    })?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.is_empty() || authority.contains('@') {
        return Err(format!(
            "invalid URL {text:?}: no host, or credentials in it"
        ));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid URL {text:?}: contains whitespace"));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(host, _)| host),
        None => authority
            .split_once(':')
            .map_or(authority, |(host, _)| host),
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err(format!(
            "{text:?} must be https:// (plain http only to a loopback test CA): an ACME \
             exchange carries the account's signed requests"
        )),
        _ => Err(format!("invalid URL {text:?}: expected https://")),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A DNS name a CA issues for over HTTP-01, lower-cased: letters, digits and '-' in labels of
/// 1 to 63, at least two labels, at most 253 in all; no wildcard, no IP address.
pub(crate) fn dns_name(text: &str) -> Result<String, String> {
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if name.starts_with("*.") {
        return Err(format!(
            "{text:?}: a wildcard needs the DNS-01 challenge, and rouse answers HTTP-01; \
             list each name"
        ));
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(format!("{text:?}: an IP address, not a DNS name"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    let well_formed = !name.is_empty()
        && name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && !labels
            .last()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()));
    if !well_formed {
        return Err(format!(
            "invalid name {text:?}: expected a DNS name such as \"www.example.com\" (letters, \
             digits and '-'; punycode for other scripts)"
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert_eq!(dns_name("WWW.Example.com.").unwrap(), "www.example.com");
        assert_eq!(
            dns_name("xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
        for bad in [
            "",
            "localhost",
            "*.example.com",
            "a..b",
            "-a.com",
            "a-.com",
            "a_b.com",
            "1.2.3.4",
            "a b.com",
            "example.123",
        ] {
            assert!(dns_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert!(check_email("ops@example.com").is_ok());
        for bad in [
            "ops",
            "@example.com",
            "ops@localhost",
            "o ps@example.com",
            "ops@ex ample.com",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn directories() {
        assert!(check_directory(LETS_ENCRYPT_DIRECTORY).is_ok());
        assert!(check_directory("http://127.0.0.1:14000/dir").is_ok());
        assert!(check_directory("http://[::1]:14000/dir").is_ok());
        assert!(check_directory("http://localhost/dir").is_ok());
        assert!(check_directory("http://ca.example.com/dir").is_err());
        assert!(check_directory("ftp://ca.example.com/dir").is_err());
        assert!(check_directory("ca.example.com/dir").is_err());
        assert!(check_directory("https:///dir").is_err());
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let mut config = AcmeConfig {
            email: None,
            directory: LETS_ENCRYPT_DIRECTORY.into(),
            domains: vec!["example.com".into()],
            dir: "acme".into(),
            ca_file: Some("ca.pem".into()),
            renew_before: DAY,
        };
        config.resolve_paths(Path::new("/etc/rouse/rouse.toml"));
        assert_eq!(config.dir, Path::new("/etc/rouse/acme"));
        assert_eq!(
            config.ca_file.as_deref(),
            Some(Path::new("/etc/rouse/ca.pem"))
        );
    }
}
