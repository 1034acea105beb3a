//! Every example configuration in examples/ must stay valid: they are what users copy.

use std::path::Path;

#[test]
fn every_example_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    // The four documented ones at least; any new example is checked too.
    for name in [
        "static.toml",
        "embedded.toml",
        "supervisord.toml",
        "full.toml",
    ] {
        assert!(
            paths
                .iter()
                .any(|p| p.file_name().is_some_and(|f| f == name)),
            "examples/{name} is missing"
        );
    }
    let invalid: Vec<String> = paths
        .iter()
        .filter_map(|path| {
            rouse_config::load(path)
                .err()
                .map(|errors| errors.to_string())
        })
        .collect();
    assert!(
        invalid.is_empty(),
        "invalid examples:\n{}",
        invalid.concat()
    );
}

#[test]
fn full_example_sets_every_key() {
    // full.toml documents the whole format: each key accepted anywhere must appear in it.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let text = std::fs::read_to_string(dir.join("full.toml")).unwrap();
    let keys = [
        "listen",
        "threads",
        "connect_timeout",
        "read_timeout",
        "client_idle_timeout",
        "client_body_timeout",
        "send_timeout",
        "pool_idle_timeout",
        "pool_max_idle_per_server",
        "shutdown_timeout",
        "token",
        "format",
        "access_log",
        "child_log_dir",
        "url",
        "username",
        "password",
        "poll_interval",
        "timeout",
        "name",
        "hosts",
        "path_prefix",
        "supervisor",
        "supervisord_name",
        "balance",
        "min_servers",
        "max_servers",
        "target_in_flight",
        "target_rps",
        "idle_timeout",
        "start_timeout",
        "queue_limit",
        "ready",
        "never_wake",
        "waiting_page",
        "slow_start",
        "fail_timeout",
        "fail_timeout_max",
        "protocol",
        "address",
        "weight",
        "max_conns",
        "program",
        "command",
        "env",
        "cwd",
        "startsecs",
        "stop_signal",
        "stop_timeout",
        "email",
        "directory",
        "domains",
        "dir",
        "ca_file",
        "renew_before",
    ];
    for key in keys {
        let set = text
            .lines()
            .any(|line| line.trim_start().starts_with(&format!("{key} =")));
        assert!(set, "full.toml does not set {key}");
    }
}
