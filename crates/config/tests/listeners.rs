//! `listen` (TCP and unix sockets), `listen_tls`, `redirect_https` and `[[proxy.tls]]`.

mod common;

use std::path::PathBuf;

use common::{ok, single};
use rouse_config::{ListenAddr, TlsFiles, load};

const UPSTREAM: &str = r#"
[[upstream]]
name = "app"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
"#;

fn with_upstream(proxy: &str) -> String {
    format!("{proxy}{UPSTREAM}")
}

#[test]
fn listen_takes_unix_sockets_and_tls_listeners_have_certificates() {
    let config = ok(&with_upstream(
        r#"
[proxy]
listen = ["127.0.0.1:8080", "unix:/run/rouse/http.sock"]
listen_tls = ["127.0.0.1:8443"]
redirect_https = ["127.0.0.1:8081"]
[[proxy.tls]]
cert = "/etc/rouse/a.pem"
key = "/etc/rouse/a.key"
[[proxy.tls]]
cert = "b.pem"
key = "b.key"
"#,
    ));
    let proxy = &config.proxy;
    assert_eq!(
        proxy.listen,
        [
            ListenAddr::Tcp("127.0.0.1:8080".parse().unwrap()),
            ListenAddr::Unix(PathBuf::from("/run/rouse/http.sock")),
        ]
    );
    assert_eq!(proxy.listen[1].to_string(), "unix:/run/rouse/http.sock");
    assert_eq!(proxy.listen_tls, ["127.0.0.1:8443".parse().unwrap()]);
    assert_eq!(proxy.redirect_https, ["127.0.0.1:8081".parse().unwrap()]);
    assert_eq!(proxy.tls.len(), 2);
    assert_eq!(proxy.tls[1].cert, PathBuf::from("b.pem"));
}

#[test]
fn https_only_has_no_plain_listener() {
    let config = ok(&with_upstream(
        "[proxy]\nlisten_tls = [\"127.0.0.1:8443\"]\n[[proxy.tls]]\ncert = \"a\"\nkey = \"b\"\n",
    ));
    assert!(config.proxy.listen.is_empty());
}

#[test]
fn relative_certificate_paths_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rouse.toml");
    std::fs::write(
        &file,
        with_upstream(
            "[proxy]\nlisten_tls = [\"127.0.0.1:8443\"]\n[[proxy.tls]]\ncert = \"certs/a.pem\"\nkey = \"/abs/a.key\"\n",
        ),
    )
    .unwrap();
    let config = load(&file).unwrap();
    assert_eq!(
        config.proxy.tls,
        [TlsFiles {
            cert: dir.path().join("certs/a.pem"),
            key: PathBuf::from("/abs/a.key"),
        }]
    );
}

#[test]
fn listen_tls_without_certificate_is_an_error_naming_the_key() {
    single(
        &with_upstream("[proxy]\nlisten_tls = [\"127.0.0.1:8443\"]\n"),
        2,
        14,
        &["listen_tls", "[[proxy.tls]]"],
    );
}

#[test]
fn a_unix_listen_path_must_be_absolute() {
    single(
        &with_upstream("[proxy]\nlisten = [\"unix:run/x.sock\"]\n"),
        2,
        11,
        &["listen", "must be absolute"],
    );
}

#[test]
fn an_address_bound_twice_across_lists_is_refused() {
    single(
        &with_upstream(
            "[proxy]\nlisten = [\"127.0.0.1:8080\"]\nredirect_https = [\"0.0.0.0:8080\"]\n",
        ),
        3,
        19,
        &["redirect_https", "0.0.0.0:8080", "127.0.0.1:8080", "line 2"],
    );
    single(
        &with_upstream("[proxy]\nlisten = [\"unix:/a.sock\", \"unix:/a.sock\"]\n"),
        2,
        27,
        &["listed twice"],
    );
}

#[test]
fn a_tls_table_needs_cert_and_key() {
    single(
        &with_upstream(
            "[proxy]\nlisten_tls = [\"127.0.0.1:8443\"]\n[[proxy.tls]]\ncert = \"a.pem\"\n",
        ),
        3,
        1,
        &["[[proxy.tls]] needs key"],
    );
    single(
        &with_upstream(
            "[proxy]\nlisten_tls = [\"127.0.0.1:8443\"]\n[[proxy.tls]]\ncert = \"a.pem\"\nkey = \"b\"\nchain = \"c\"\n",
        ),
        6,
        1,
        &["unknown key \"chain\"", "[[proxy.tls]]"],
    );
}

#[test]
fn listen_tls_with_acme_alone_is_valid() {
    let config = ok(&with_upstream(
        "[proxy]\nlisten_tls = [\"127.0.0.1:8443\"]\nredirect_https = [\"127.0.0.1:8080\"]\n\
         [proxy.acme]\ndomains = [\"example.com\"]\ndir = \"/var/lib/rouse/acme\"\n",
    ));
    assert!(config.proxy.tls.is_empty());
    assert!(config.proxy.acme.is_some());
}
