//! `[proxy.acme]`: defaults, and each error at its `LINE:COL`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{errors, ok, single};
use rouse_config::LETS_ENCRYPT_DIRECTORY;

const UPSTREAM: &str = "\n[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\n[[upstream.server]]\naddress = \"127.0.0.1:9101\"\n";

fn with_upstream(acme: &str) -> String {
    format!("{acme}{UPSTREAM}")
}

#[test]
fn defaults() {
    let config = ok(&with_upstream(
        "\n[proxy.acme]\ndomains = [\"Example.com\", \"www.example.com.\"]\n",
    ));
    let acme = config.proxy.acme.expect("acme set");
    assert_eq!(acme.domains, ["example.com", "www.example.com"]);
    assert_eq!(acme.directory, LETS_ENCRYPT_DIRECTORY);
    assert_eq!(acme.dir, Path::new("/var/lib/rouse/acme"));
    assert_eq!(acme.email, None);
    assert_eq!(acme.ca_file, None);
    assert_eq!(acme.renew_before, Duration::from_secs(30 * 86_400));
    assert!(ok(UPSTREAM).proxy.acme.is_none());
}

#[test]
fn beside_other_proxy_keys() {
    let config = ok(&with_upstream(
        "\n[proxy]\nthreads = 2\n\n[proxy.acme]\nemail = \"ops@example.com\"\n\
         directory = \"https://127.0.0.1:14000/dir\"\ndomains = [\"a.example\"]\n\
         ca_file = \"/etc/ca.pem\"\nrenew_before = \"10d\"\n",
    ));
    assert_eq!(config.proxy.threads, 2);
    let acme = config.proxy.acme.unwrap();
    assert_eq!(acme.email.as_deref(), Some("ops@example.com"));
    assert_eq!(acme.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
    assert_eq!(acme.renew_before, Duration::from_secs(10 * 86_400));
}

#[test]
fn domains_are_required() {
    single(
        &with_upstream("\n[proxy.acme]\nemail = \"ops@example.com\"\n"),
        1,
        1,
        &["[proxy.acme] needs domains"],
    );
    single(
        &with_upstream("\n[proxy.acme]\ndomains = []\n"),
        2,
        11,
        &["at least one name"],
    );
}

#[test]
fn each_bad_value_is_reported_where_it_is() {
    let all = errors(&with_upstream(
        "\n[proxy.acme]\nemail = \"ops\"\ndirectory = \"http://ca.example.com/dir\"\n\
         domains = [\"ok.example\", \"*.example.com\", \"ok.example\"]\n\
         renew_before = \"0s\"\nbogus = 1\n",
    ));
    let found: Vec<(usize, usize, String)> = all
        .iter()
        .map(|e| (e.line, e.column, e.message.clone()))
        .collect();
    let expect = [
        (6, 1, "unknown key \"bogus\" in [proxy.acme]"),
        (2, 9, "email: invalid email"),
        (
            3,
            13,
            "directory: \"http://ca.example.com/dir\" must be https://",
        ),
        (4, 26, "wildcard"),
        (4, 43, "listed twice"),
        (5, 16, "renew_before: must be more than 0s"),
    ];
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    for (line, column, needle) in expect {
        assert!(
            found
                .iter()
                .any(|(l, c, m)| (*l, *c) == (line, column) && m.contains(needle)),
            "no {line}:{column} {needle:?} in {found:#?}"
        );
    }
}

#[test]
fn relative_dir_is_taken_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rouse.toml");
    std::fs::write(
        &path,
        with_upstream(
            "[proxy.acme]\ndomains = [\"a.example\"]\ndir = \"acme\"\nca_file = \"ca.pem\"\n",
        ),
    )
    .unwrap();
    let acme = rouse_config::load(&path).unwrap().proxy.acme.unwrap();
    assert_eq!(acme.dir, dir.path().join("acme"));
    assert_eq!(acme.ca_file, Some(dir.path().join("ca.pem")));
}
