//! `[log]`'s access-log keys: their defaults, what they mean, and each error's `LINE:COL`.

mod common;

use std::path::{Path, PathBuf};

use common::{UPSTREAM, ok, single};
use rouse_config::AccessLogFormat;

fn with_log(log: &str) -> String {
    format!("[log]\n{log}{UPSTREAM}")
}

#[test]
fn defaults_log_everything_to_stderr_as_combined() {
    let config = ok(UPSTREAM);
    let log = &config.log;
    assert!(log.access_log);
    assert_eq!(log.access_log_file, None);
    assert_eq!(log.access_log_format, AccessLogFormat::Combined);
    assert!(log.access_log_status.is_empty());
    assert_eq!(log.access_log_sample, 1.0);
}

#[test]
fn a_path_is_the_file_and_turns_the_log_on() {
    let config = ok(&with_log(
        "access_log = \"/var/log/rouse/access.log\"\naccess_log_format = \"json\"\n\
         access_log_status = [\"4xx\", \"502\"]\naccess_log_sample = 0.25\n",
    ));
    let log = &config.log;
    assert!(log.access_log);
    assert_eq!(
        log.access_log_file,
        Some(PathBuf::from("/var/log/rouse/access.log"))
    );
    assert_eq!(log.access_log_format, AccessLogFormat::Json);
    assert_eq!(log.access_log_status, [(400, 499), (502, 502)]);
    assert_eq!(log.access_log_sample, 0.25);
    let relative = ok(&with_log("access_log = \"./access.log\"\n"));
    assert_eq!(
        relative.log.access_log_file.as_deref(),
        Some(Path::new("./access.log"))
    );
}

#[test]
fn a_word_is_not_a_path() {
    single(
        &with_log("access_log = \"stderr\"\n"),
        2,
        14,
        &["access_log", "a boolean", "/var/log/rouse/access.log"],
    );
}

#[test]
fn access_log_is_not_a_number() {
    single(
        &with_log("access_log = 1\n"),
        2,
        14,
        &["access_log", "a boolean"],
    );
}

#[test]
fn format_is_combined_or_json() {
    single(
        &with_log("access_log_format = \"main\"\n"),
        2,
        21,
        &["access_log_format", "`combined`", "`json`"],
    );
}

#[test]
fn status_entries_are_classes_or_codes() {
    single(
        &with_log("access_log_status = [\"4xx\", \"600\"]\n"),
        2,
        29,
        &["access_log_status", "\"600\"", "\"4xx\""],
    );
    single(
        &with_log("access_log_status = []\n"),
        2,
        21,
        &["access_log_status", "access_log = false"],
    );
}

#[test]
fn sample_is_a_fraction() {
    for bad in ["0.0", "1.5", "-0.1"] {
        single(
            &with_log(&format!("access_log_sample = {bad}\n")),
            2,
            21,
            &["access_log_sample", "at most 1"],
        );
    }
}

#[test]
fn full_example_sets_the_access_log_keys() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let text = std::fs::read_to_string(dir.join("full.toml")).unwrap();
    for key in [
        "access_log",
        "access_log_format",
        "access_log_status",
        "access_log_sample",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{key} ="))),
            "full.toml does not set {key}"
        );
    }
}
