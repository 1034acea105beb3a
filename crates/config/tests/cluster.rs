//! `[cluster]`: replicas coordinated through etcd. Valid sections with their defaults, then one
//! test per error with its exact `LINE:COL`, and the password kept out of every output.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{UPSTREAM, check, errors, ok, single};
use rouse_config::summary;

/// `[cluster]` written first (so its lines are the file's first ones), then one upstream.
fn with_upstream(cluster: &str) -> String {
    format!("{cluster}{UPSTREAM}")
}

/// A CA (or client certificate) file and a key file, as PEM text.
struct Pems {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

fn pems() -> Pems {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    Pems {
        _dir: dir,
        cert,
        key,
    }
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn a_full_section_is_read_as_written() {
    let pems = pems();
    let config = ok(&with_upstream(&format!(
        r#"
[cluster]
etcd = ["https://10.0.0.1:2379", "HTTPS://Etcd-2.Example:2379/"]
name = "edge"
id = "edge-1/0.0.0.0:8080"
lease_ttl = "10s"
timeout = "3s"
user = "rouse"
password = "s3cret"
ca_file = "{0}"
cert_file = "{0}"
key_file = "{1}"
"#,
        shown(&pems.cert),
        shown(&pems.key)
    )));
    let cluster = config.cluster.expect("[cluster] is read");
    assert_eq!(
        cluster.etcd,
        ["https://10.0.0.1:2379", "https://etcd-2.example:2379"]
    );
    assert_eq!(cluster.name, "edge");
    assert_eq!(cluster.id.as_deref(), Some("edge-1/0.0.0.0:8080"));
    assert_eq!(cluster.lease_ttl, Duration::from_secs(10));
    assert_eq!(cluster.timeout, Duration::from_secs(3));
    assert_eq!(cluster.user.as_deref(), Some("rouse"));
    assert_eq!(cluster.password.as_deref(), Some("s3cret"));
    assert_eq!(cluster.ca_file.as_deref(), Some(pems.cert.as_path()));
    assert_eq!(cluster.cert_file.as_deref(), Some(pems.cert.as_path()));
    assert_eq!(cluster.key_file.as_deref(), Some(pems.key.as_path()));
}

#[test]
fn a_minimal_section_gets_the_defaults() {
    let config = ok(&with_upstream(
        r#"
[cluster]
etcd = ["http://127.0.0.1:2379"]
name = "edge"
"#,
    ));
    let cluster = config.cluster.expect("[cluster] is read");
    assert_eq!(cluster.etcd, ["http://127.0.0.1:2379"]);
    assert_eq!(cluster.id, None);
    assert_eq!(cluster.lease_ttl, Duration::from_secs(5));
    assert_eq!(cluster.timeout, Duration::from_secs(1));
    assert!(cluster.timeout * 3 < cluster.lease_ttl);
    assert_eq!((cluster.user, cluster.password), (None, None));
    assert_eq!(
        (cluster.ca_file, cluster.cert_file, cluster.key_file),
        (None, None, None)
    );
}

#[test]
fn no_section_no_cluster() {
    assert_eq!(ok(UPSTREAM).cluster, None);
}

#[test]
fn the_password_is_masked_in_debug_and_in_the_summary() {
    let config = ok(&with_upstream(
        r#"
[cluster]
etcd = ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
name = "edge"
id = "edge-1"
user = "rouse"
password = "s3cret"
"#,
    ));
    let debug = format!("{config:?}");
    assert!(debug.contains("password: Some(\"***\")"), "{debug}");
    for text in [debug, format!("{config:#?}")] {
        assert!(!text.contains("s3cret"), "{text}");
    }
    let text = summary(&config);
    assert!(!text.contains("s3cret"), "{text}");
    assert!(
        text.lines().any(|l| l
            == "cluster      \"edge\" through etcd http://10.0.0.1:2379, http://10.0.0.2:2379; \
                id edge-1 (lease 5s, timeout 1s, user rouse)"),
        "{text}"
    );
}

#[test]
fn the_summary_says_where_the_id_comes_from_and_the_tls_files() {
    let pems = pems();
    let config = ok(&with_upstream(&format!(
        r#"
[cluster]
etcd = ["https://10.0.0.1:2379"]
name = "edge"
ca_file = "{0}"
cert_file = "{0}"
key_file = "{1}"
"#,
        shown(&pems.cert),
        shown(&pems.key)
    )));
    let text = summary(&config);
    let cert = shown(&pems.cert);
    let line = format!(
        "cluster      \"edge\" through etcd https://10.0.0.1:2379; id: host name/first listen \
         address (lease 5s, timeout 1s, CA {cert}, client certificate {cert})"
    );
    assert!(text.lines().any(|l| l == line), "{text}");
    // Without [cluster], the summary has no such line.
    assert!(!summary(&ok(UPSTREAM)).contains("cluster"));
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn etcd_is_required() {
    single(
        &with_upstream("\n[cluster]\nname = \"edge\"\n"),
        1,
        1,
        &["[cluster] needs etcd", "http://"],
    );
}

#[test]
fn etcd_needs_a_url() {
    single(
        &with_upstream("\n[cluster]\nname = \"edge\"\netcd = []\n"),
        3,
        8,
        &["etcd", "at least one URL"],
    );
}

#[test]
fn etcd_urls_are_http_or_https() {
    single(
        &with_upstream(
            "\n[cluster]\nname = \"edge\"\netcd = [\"http://10.0.0.1:2379\", \"10.0.0.2:2379\"]\n",
        ),
        3,
        33,
        &["etcd", "\"10.0.0.2:2379\"", "https://HOST:PORT"],
    );
    single(
        &with_upstream("\n[cluster]\nname = \"edge\"\netcd = [\"http://h:2379/v3\"]\n"),
        3,
        9,
        &["etcd", "http://h:2379/v3"],
    );
    single(
        &with_upstream("\n[cluster]\nname = \"edge\"\netcd = [\"http://h:99999\"]\n"),
        3,
        9,
        &["etcd", "bad port"],
    );
}

#[test]
fn credentials_in_an_etcd_url_are_refused_and_not_shown() {
    let error = single(
        &with_upstream("\n[cluster]\nname = \"edge\"\netcd = [\"http://u:s3cret@h:2379\"]\n"),
        3,
        9,
        &["etcd", "user and password", "u:***@h:2379"],
    );
    assert!(!error.to_string().contains("s3cret"), "{error}");
}

#[test]
fn an_etcd_url_listed_twice() {
    single(
        &with_upstream(
            "\n[cluster]\nname = \"edge\"\netcd = [\"http://h:2379\", \"http://H:2379/\"]\n",
        ),
        3,
        26,
        &["etcd", "\"http://h:2379\" is listed twice"],
    );
}

#[test]
fn name_is_required() {
    single(
        &with_upstream("\n[cluster]\netcd = [\"http://h:2379\"]\n"),
        1,
        1,
        &["[cluster] needs a name", "/rouse/NAME/"],
    );
}

#[test]
fn name_is_a_short_plain_word() {
    single(
        &with_upstream("\n[cluster]\netcd = [\"http://h:2379\"]\nname = \"edge/1\"\n"),
        3,
        8,
        &["name", "'/' is not allowed"],
    );
    single(
        &with_upstream(&format!(
            "\n[cluster]\netcd = [\"http://h:2379\"]\nname = \"{}\"\n",
            "a".repeat(65)
        )),
        3,
        8,
        &["name", "longer than 64"],
    );
    single(
        &with_upstream("\n[cluster]\netcd = [\"http://h:2379\"]\nname = \"\"\n"),
        3,
        8,
        &["name", "must not be empty"],
    );
}

#[test]
fn id_allows_slash_and_colon_and_nothing_else() {
    let config = ok(&with_upstream(
        "\n[cluster]\netcd = [\"http://h:2379\"]\nname = \"e\"\nid = \"edge-1/host:80\"\n",
    ));
    assert_eq!(
        config.cluster.unwrap().id.as_deref(),
        Some("edge-1/host:80")
    );
    let errors = errors(&with_upstream(
        "\n[cluster]\netcd = [\"http://h:2379\"]\nname = \"e\"\nid = \"edge 1\"\n",
    ));
    assert_eq!(errors.len(), 1, "{errors:?}");
    check(&errors[0], 4, 6, &["id", "' ' is not allowed", "'/', ':'"]);
    single(
        &with_upstream(&format!(
            "\n[cluster]\netcd = [\"http://h:2379\"]\nname = \"e\"\nid = \"{}\"\n",
            "a".repeat(129)
        )),
        4,
        6,
        &["id", "longer than 128"],
    );
}

#[test]
fn lease_ttl_bounds() {
    let head = "\n[cluster]\netcd = [\"http://h:2379\"]\nname = \"e\"\n";
    single(
        &with_upstream(&format!("{head}lease_ttl = \"1s\"\n")),
        4,
        13,
        &["lease_ttl", "1s is too short (at least 2s)"],
    );
    single(
        &with_upstream(&format!("{head}lease_ttl = \"301s\"\n")),
        4,
        13,
        &["lease_ttl", "too long (at most 5m)"],
    );
    single(
        &with_upstream(&format!("{head}lease_ttl = 5\n")),
        4,
        13,
        &["lease_ttl", "duration"],
    );
}

#[test]
fn timeout_bounds() {
    let head = "\n[cluster]\netcd = [\"http://h:2379\"]\nname = \"e\"\nlease_ttl = \"300s\"\n";
    single(
        &with_upstream(&format!("{head}timeout = \"50ms\"\n")),
        5,
        11,
        &["timeout", "50ms is too short (at least 100ms)"],
    );
    single(
        &with_upstream(&format!("{head}timeout = \"61s\"\n")),
        5,
        11,
        &["timeout", "too long (at most 1m)"],
    );
}

#[test]
fn timeout_is_under_a_third_of_the_lease() {
    let head = "\n[cluster]\netcd = [\"http://h:2379\"]\nname = \"e\"\n";
    single(
        &with_upstream(&format!("{head}lease_ttl = \"6s\"\ntimeout = \"2s\"\n")),
        5,
        11,
        &["timeout", "2s must be less than a third of lease_ttl (6s)"],
    );
    // The default timeout (1s) against a short lease: the lease is the key written.
    single(
        &with_upstream(&format!("{head}lease_ttl = \"3s\"\n")),
        4,
        13,
        &["lease_ttl", "more than three times timeout (default 1s)"],
    );
    ok(&with_upstream(&format!(
        "{head}lease_ttl = \"2s\"\ntimeout = \"600ms\"\n"
    )));
}

#[test]
fn user_and_password_go_together() {
    let head = "\n[cluster]\netcd = [\"http://h:2379\"]\nname = \"e\"\n";
    single(
        &with_upstream(&format!("{head}user = \"rouse\"\n")),
        4,
        1,
        &["user is set but password is missing"],
    );
    let error = single(
        &with_upstream(&format!("{head}password = \"s3cret\"\n")),
        4,
        1,
        &["password is set but user is missing"],
    );
    assert!(!error.to_string().contains("s3cret"));
    single(
        &with_upstream(&format!("{head}user = \"\"\npassword = \"p\"\n")),
        4,
        8,
        &["user: must not be empty"],
    );
}

#[test]
fn etcd_urls_are_all_http_or_all_https() {
    single(
        &with_upstream(
            "\n[cluster]\nname = \"edge\"\netcd = [\"https://10.0.0.1:2379\", \"http://10.0.0.2:2379\"]\n",
        ),
        3,
        8,
        &["etcd", "all https://", "not both"],
    );
}

#[test]
fn tls_files_need_https_endpoints() {
    let pems = pems();
    let cert = shown(&pems.cert);
    for key in ["ca_file", "cert_file"] {
        let mut text =
            format!("\n[cluster]\netcd = [\"http://h:2379\"]\nname = \"e\"\n{key} = \"{cert}\"\n");
        if key == "cert_file" {
            text.push_str(&format!("key_file = \"{}\"\n", shown(&pems.key)));
        }
        let errors = errors(&with_upstream(&text));
        check(&errors[0], 4, 1, &[key, "only for https:// endpoints"]);
    }
}

#[test]
fn tls_files_must_exist_and_hold_pem() {
    let pems = pems();
    let head = "\n[cluster]\netcd = [\"https://h:2379\"]\nname = \"e\"\n";
    single(
        &with_upstream(&format!("{head}ca_file = \"/nonexistent/ca.pem\"\n")),
        4,
        11,
        &["ca_file", "/nonexistent/ca.pem"],
    );
    // A key where the certificate should be, and the other way round.
    let key = shown(&pems.key);
    let cert = shown(&pems.cert);
    let errors = errors(&with_upstream(&format!(
        "{head}cert_file = \"{key}\"\nkey_file = \"{cert}\"\n"
    )));
    assert_eq!(errors.len(), 2, "{errors:?}");
    check(&errors[0], 4, 13, &["cert_file", "no PEM certificate"]);
    check(&errors[1], 5, 12, &["key_file", "no PEM private key"]);
}

#[test]
fn cert_file_and_key_file_go_together() {
    let pems = pems();
    let head = "\n[cluster]\netcd = [\"https://h:2379\"]\nname = \"e\"\n";
    single(
        &with_upstream(&format!("{head}cert_file = \"{}\"\n", shown(&pems.cert))),
        4,
        1,
        &["cert_file is set but key_file is missing"],
    );
    single(
        &with_upstream(&format!("{head}key_file = \"{}\"\n", shown(&pems.key))),
        4,
        1,
        &["key_file is set but cert_file is missing"],
    );
}

#[test]
fn unknown_keys_and_shapes() {
    single(
        &with_upstream("\n[cluster]\netcd = [\"http://h:2379\"]\nname = \"e\"\nlease = \"5s\"\n"),
        4,
        1,
        &["unknown key \"lease\" in [cluster]", "lease_ttl"],
    );
    single(
        &with_upstream("\ncluster = \"edge\"\n"),
        1,
        11,
        &["[cluster] must be a table"],
    );
    single(
        &with_upstream("\n[cluster]\netcd = \"http://h:2379\"\nname = \"e\"\n"),
        2,
        8,
        &["etcd", "invalid type"],
    );
}

#[test]
fn every_error_of_the_section_is_reported_at_once() {
    let errors = errors(&with_upstream(
        "\n[cluster]\netcd = [\"ftp://h\"]\nname = \"a b\"\nlease_ttl = \"1h\"\nuser = \"u\"\n",
    ));
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 3, 4, 5], "{errors:?}");
}

/// full.toml documents the whole format; `[cluster]` is there commented out, since a rouse run
/// on it would then look for etcd (examples/cluster.toml is the one to run).
#[test]
fn full_example_documents_every_cluster_key() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let text = std::fs::read_to_string(dir.join("full.toml")).unwrap();
    assert!(text.contains("# [cluster]"), "no [cluster] in full.toml");
    for key in [
        "etcd",
        "name",
        "id",
        "lease_ttl",
        "timeout",
        "user",
        "password",
        "ca_file",
        "cert_file",
        "key_file",
    ] {
        let documented = text
            .lines()
            .any(|line| line.trim_start().starts_with(&format!("# {key} =")));
        assert!(documented, "full.toml does not document [cluster] {key}");
    }
    let example = rouse_config::load(&dir.join("cluster.toml")).expect("examples/cluster.toml");
    assert!(example.cluster.is_some());
}
