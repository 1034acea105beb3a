//! Which config file `rouse check` and `rouse run` read: `-c FILE`, else `$ROUSE_CONFIG`, else
//! `./rouse.toml`, else `/etc/rouse/rouse.toml`; each says which one it read.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use tokio::time::Instant;

use common::{ROUSE, WAIT, free_addrs, stderr, stdout};

/// A valid config whose upstream's name tells the files apart in `check`'s summary.
fn config(dir: &Path, file: &str, upstream: &str, listen: SocketAddr) -> String {
    let text = format!(
        "[proxy]\nlisten = [\"{listen}\"]\n\
         [[upstream]]\nname = \"{upstream}\"\nsupervisor = \"none\"\n\
         [[upstream.server]]\naddress = \"127.0.0.1:9\"\n"
    );
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `rouse ARGS` in `dir`, with `$ROUSE_CONFIG` as given (never the caller's).
fn rouse_in(dir: &Path, env: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(ROUSE);
    cmd.args(args).current_dir(dir).env_remove("ROUSE_CONFIG");
    if let Some(v) = env {
        cmd.env("ROUSE_CONFIG", v);
    }
    cmd.output().expect("rouse runs")
}

#[test]
fn check_reads_the_local_file_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let [a] = free_addrs();
    config(dir.path(), "rouse.toml", "local", a);
    let out = rouse_in(dir.path(), None, &["check"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with("config: rouse.toml (found in the working directory)\n"),
        "{text}"
    );
    assert!(text.contains("upstream \"local\""), "{text}");
}

#[test]
fn the_variable_wins_over_the_local_file() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b] = free_addrs();
    config(dir.path(), "rouse.toml", "local", a);
    let env = config(dir.path(), "env.toml", "from_env", b);
    let out = rouse_in(dir.path(), Some(&env), &["check"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("config: {env} ($ROUSE_CONFIG)\n")),
        "{text}"
    );
    assert!(text.contains("upstream \"from_env\""), "{text}");
    assert!(!text.contains("upstream \"local\""), "{text}");
}

#[test]
fn the_flag_wins_over_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b] = free_addrs();
    let env = config(dir.path(), "env.toml", "from_env", a);
    let flag = config(dir.path(), "flag.toml", "from_flag", b);
    let out = rouse_in(dir.path(), Some(&env), &["check", "-c", &flag]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("config: {flag} (-c)\n")),
        "{text}"
    );
    assert!(text.contains("upstream \"from_flag\""), "{text}");
}

#[test]
fn a_variable_naming_a_missing_file_is_an_error_about_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let [a] = free_addrs();
    // Not read instead: the operator's explicit choice is not silently passed over.
    config(dir.path(), "rouse.toml", "local", a);
    let out = rouse_in(dir.path(), Some("/nonexistent/env.toml"), &["check"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("/nonexistent/env.toml"), "{out:?}");
}

#[test]
fn no_file_anywhere_exits_1_naming_the_four_places() {
    let dir = tempfile::tempdir().unwrap();
    if Path::new("/etc/rouse/rouse.toml").is_file() {
        // A machine with rouse installed: the system file is the last place looked.
        let out = rouse_in(dir.path(), None, &["check"]);
        assert!(
            stdout(&out).starts_with("config: /etc/rouse/rouse.toml (found in /etc/rouse)\n"),
            "{out:?}"
        );
        return;
    }
    for cmd in ["check", "run"] {
        let out = rouse_in(dir.path(), None, &[cmd]);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {out:?}");
        assert_eq!(
            stderr(&out),
            "rouse: no config file: tried -c FILE (not given), $ROUSE_CONFIG (not set), \
             ./rouse.toml (not found), /etc/rouse/rouse.toml (not found)\n",
            "{cmd}"
        );
    }
}

#[test]
fn run_logs_the_file_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b] = free_addrs();
    config(dir.path(), "rouse.toml", "local", a);
    let env = config(dir.path(), "env.toml", "from_env", b);
    let log = dir.path().join("rouse.log");
    let mut child = Command::new(ROUSE)
        .arg("run")
        .current_dir(dir.path())
        .env("ROUSE_CONFIG", &env)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The env file's listener serves; the local file's is never bound.
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(b).is_err() {
        assert!(Instant::now() < deadline, "rouse never listened");
        assert!(child.try_wait().unwrap().is_none(), "rouse exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline + WAIT, "rouse did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(&log).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("configuration read"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains(&format!("{env} ($ROUSE_CONFIG)")), "{line}");
    // The local file's listener is never bound (the log says so: a connect to its port could
    // reach another process that took it meanwhile).
    let serving = log
        .lines()
        .find(|l| l.contains("rouse is serving"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        serving.contains(&format!("listen=[{b}]")) && !serving.contains(&a.to_string()),
        "{serving}"
    );
}

#[test]
fn client_commands_find_the_admin_api_through_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let [a, admin] = free_addrs();
    let env = dir.path().join("env.toml");
    std::fs::write(
        &env,
        format!(
            "[proxy]\nlisten = [\"{a}\"]\n[admin]\nlisten = \"{admin}\"\n\
             [[upstream]]\nname = \"app\"\nsupervisor = \"none\"\n\
             [[upstream.server]]\naddress = \"127.0.0.1:9\"\n"
        ),
    )
    .unwrap();
    // Nothing listens there: the error names the address the file gave.
    let out = rouse_in(dir.path(), env.to_str(), &["status"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains(&admin.to_string()), "{out:?}");
}
