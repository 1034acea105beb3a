//! `rouse check` on `[[proxy.tls]]` files: a bad one is a bad config (exit 1, the file named);
//! an expired certificate is a warning with its date (exit 0).

use std::path::Path;
use std::process::{Command, Output};

use rcgen::{CertificateParams, KeyPair};

const ROUSE: &str = env!("CARGO_BIN_EXE_rouse");

/// A self-signed certificate for `name` as `NAME.pem` / `NAME.key` in `dir`.
fn leaf(dir: &Path, name: &str, params: Option<CertificateParams>) {
    let key = KeyPair::generate().unwrap();
    let params = params.unwrap_or_else(|| CertificateParams::new(vec![name.to_owned()]).unwrap());
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

/// `rouse check` on a config with one `[[proxy.tls]]` of `cert` and `key` (relative to it).
fn check(dir: &Path, cert: &str, key: &str) -> Output {
    let text = format!(
        "[proxy]\nlisten_tls = [\"127.0.0.1:8443\"]\n[[proxy.tls]]\ncert = \"{cert}\"\nkey = \"{key}\"\n\
         [[upstream]]\nname = \"s\"\nsupervisor = \"none\"\n[[upstream.server]]\naddress = \"127.0.0.1:9101\"\n"
    );
    let file = dir.join("rouse.toml");
    std::fs::write(&file, text).unwrap();
    Command::new(ROUSE)
        .args(["check", "-c", file.to_str().unwrap()])
        .output()
        .expect("rouse runs")
}

#[test]
fn check_names_the_missing_certificate_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(dir.path(), "missing.pem", "missing.key");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let path = dir.path().join("missing.pem");
    assert!(
        stderr.contains(&format!("{}: cannot read", path.display())),
        "{stderr}"
    );
}

#[test]
fn check_names_a_key_that_does_not_match_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    leaf(dir.path(), "a.test", None);
    leaf(dir.path(), "b.test", None);
    let out = check(dir.path(), "a.test.pem", "b.test.key");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("b.test.key: this key does not match the certificate in")
            && stderr.contains("a.test.pem"),
        "{stderr}"
    );
}

#[test]
fn check_warns_of_an_expired_certificate_with_its_date() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = CertificateParams::new(vec!["old.test".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 3, 4);
    leaf(dir.path(), "old.test", Some(params));
    let out = check(dir.path(), "old.test.pem", "old.test.key");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning:") && stderr.contains("expired on") && stderr.contains("2021"),
        "{stderr}"
    );
    assert!(stdout.contains("old.test.pem: old.test"), "{stdout}");
    assert!(stdout.contains("https"), "{stdout}");
}
