//! `rouse status` and `rouse start|stop` as users run them, against a `rouse run` process with
//! an admin API: the table, the exit codes (0 done, 1 refused, 2 unreachable), and the token
//! from `--token`, `ROUSE_ADMIN_TOKEN` or the config file.
//!
//! The supervised server is `python3 -m http.server`, run by rouse's embedded supervisor
//! (`scripts/test.sh` installs python3).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

mod common;

use common::{ROUSE, WAIT, free_addrs, stderr, stdout};

/// A `rouse run` in the background, stopped with SIGTERM (so it stops its children) on drop.
struct Running {
    child: Child,
    config: PathBuf,
    admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl Running {
    fn start(token: Option<&str>) -> (Running, SocketAddr) {
        Running::start_with(token, "")
    }

    /// With `extra` appended to the config file (more upstreams).
    fn start_with(token: Option<&str>, extra: &str) -> (Running, SocketAddr) {
        let dir = tempfile::tempdir().unwrap();
        let [proxy, admin, app0, web0] = free_addrs();
        let token = token.map_or(String::new(), |t| format!("token = {t:?}\n"));
        let text = format!(
            "[proxy]\nlisten = [\"{proxy}\"]\nshutdown_timeout = \"5s\"\n\
             [admin]\nlisten = \"{admin}\"\n{token}\
             [[upstream]]\nname = \"app\"\nidle_timeout = \"5m\"\n\
             [[upstream.server]]\naddress = \"{app0}\"\nstop_timeout = \"3s\"\n\
             command = [\"python3\", \"-m\", \"http.server\", \"--bind\", \"127.0.0.1\", \"{}\"]\n\
             [[upstream]]\nname = \"web\"\nhosts = [\"web.example\"]\nsupervisor = \"none\"\n\
             [[upstream.server]]\naddress = \"{web0}\"\n{extra}",
            app0.port()
        );
        let config = dir.path().join("rouse.toml");
        std::fs::write(&config, text).unwrap();
        let child = Command::new(ROUSE)
            .args(["run", "-c"])
            .arg(&config)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rouse runs");
        let mut r = Running {
            child,
            config,
            admin,
            dir,
        };
        r.wait_listening();
        (r, app0)
    }

    fn wait_listening(&mut self) {
        let deadline = std::time::SystemTime::now() + WAIT;
        while TcpStream::connect(self.admin).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("rouse exited early: {status}");
            }
            assert!(
                std::time::SystemTime::now() < deadline,
                "rouse's admin API did not listen on {}",
                self.admin
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `rouse ARGS`, run in an empty directory (no ./rouse.toml) without ROUSE_ADMIN_TOKEN.
    fn cli(&self, args: &[&str]) -> Output {
        cli_in(self.dir.path().join("elsewhere").as_path(), args, &[])
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..400 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    std::fs::create_dir_all(dir).unwrap();
    let mut c = Command::new(ROUSE);
    c.args(args)
        .current_dir(dir)
        .env_remove("ROUSE_ADMIN_TOKEN")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("rouse runs")
}

/// The row of server `index` of `upstream` in `rouse status`'s table, split into columns.
fn status_row(table: &str, upstream: &str, index: usize) -> Vec<String> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|cols| cols.len() >= 9 && cols[0] == upstream && cols[2] == index.to_string())
        .unwrap_or_else(|| panic!("no row for server {index} of {upstream} in:\n{table}"))
}

/// Polls `rouse status` until server `index` of `upstream` shows `state`.
fn wait_status_state(r: &Running, upstream: &str, index: usize, state: &str) -> String {
    let admin = r.admin.to_string();
    let deadline = std::time::SystemTime::now() + WAIT;
    loop {
        let out = r.cli(&["status", "--admin", &admin]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let table = stdout(&out);
        if status_row(&table, upstream, index)[5] == state {
            return table;
        }
        assert!(
            std::time::SystemTime::now() < deadline,
            "server {index} of {upstream} never showed {state}:\n{table}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn status_prints_an_aligned_table_of_upstreams_and_servers() {
    let (r, app0) = Running::start(None);
    let admin = r.admin.to_string();
    let out = r.cli(&["status", "--admin", &admin]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("UPSTREAM  HELD  #  ADDRESS"),
        "{table}"
    );
    for col in ["PROGRAM", "STATE", "IN-FLIGHT", "REQUESTS"] {
        assert!(lines[0].contains(col), "{col} in {table}");
    }
    let app = status_row(&table, "app", 0);
    assert_eq!(
        (
            app[1].as_str(),
            app[3].as_str(),
            app[4].as_str(),
            app[5].as_str()
        ),
        ("0", app0.to_string().as_str(), "app0", "stopped"),
        "{table}"
    );
    assert_eq!(status_row(&table, "web", 0)[5], "ready", "{table}");
    // Aligned: the STATE column starts at the same place on every row.
    let at = lines[0].find("STATE").unwrap();
    for l in &lines[1..3] {
        assert!(
            l[at..].starts_with("stopped") || l[at..].starts_with("ready"),
            "{table}"
        );
    }

    // The address from the config file's [admin] section, and from ./rouse.toml.
    let out = r.cli(&["status", "-c", r.config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(status_row(&stdout(&out), "app", 0)[3], app0.to_string());
    let out = cli_in(r.dir.path(), &["status"], &[]);
    assert_eq!(out.status.code(), Some(0), "./rouse.toml is read: {out:?}");

    // --json: the admin API's answer.
    let out = r.cli(&["status", "--admin", &admin, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["upstreams"][0]["name"], "app");
    assert_eq!(json["upstreams"][0]["servers"][0]["state"], "stopped");
}

#[test]
fn status_exits_2_when_the_admin_api_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let [nobody] = free_addrs();
    let out = cli_in(dir.path(), &["status", "--admin", &nobody.to_string()], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the admin API") && err.contains(&nobody.to_string()),
        "{err}"
    );
    assert!(stdout(&out).is_empty());

    // A config without [admin]: rouse serves no admin API, and the message says so.
    let f = dir.path().join("plain.toml");
    std::fs::write(
        &f,
        "[[upstream]]\nname = \"web\"\nsupervisor = \"none\"\n\
         [[upstream.server]]\naddress = \"127.0.0.1:9\"\n",
    )
    .unwrap();
    let out = cli_in(dir.path(), &["status", "-c", f.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("no [admin] section"), "{out:?}");

    // start and stop too.
    let out = cli_in(
        dir.path(),
        &["start", "app", "--admin", &nobody.to_string()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // Something that is not an address at all.
    let out = cli_in(dir.path(), &["status", "--admin", "not an address"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn start_then_status_shows_the_server_and_stop_stops_it() {
    let (r, app0) = Running::start(None);
    let admin = r.admin.to_string();
    let out = r.cli(&["start", "app", "--admin", &admin]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).contains(&format!("starting server 0 ({app0})")),
        "{out:?}"
    );
    let table = wait_status_state(&r, "app", 0, "ready");
    assert!(table.contains("start"), "the event is listed: {table}");
    assert!(TcpStream::connect(app0).is_ok(), "the server listens");

    // Refused commands: exit 1 with the admin API's reason.
    for (args, why) in [
        (vec!["start", "app"], "already up"),
        (vec!["start", "web"], "static"),
        (vec!["stop", "nope"], "no upstream named"),
        (vec!["start", "app", "5"], "no server 5"),
    ] {
        let mut a = args.clone();
        a.extend(["--admin", &admin]);
        let out = r.cli(&a);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(stderr(&out).contains(why), "{args:?}: {out:?}");
    }

    let out = r.cli(&["stop", "app", "0", "--admin", &admin]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("stopping server 0"), "{out:?}");
    wait_status_state(&r, "app", 0, "stopped");
}

#[test]
fn a_missing_or_wrong_token_is_refused_with_exit_1() {
    let (r, _) = Running::start(Some("s3cret"));
    let admin = r.admin.to_string();
    let out = r.cli(&["start", "app", "0", "--admin", &admin]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("401"), "{out:?}");
    let out = r.cli(&["start", "app", "0", "--admin", &admin, "--token", "wrong"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("wrong token"), "{out:?}");
    // Status needs no token.
    assert_eq!(
        status_row(&stdout(&r.cli(&["status", "--admin", &admin])), "app", 0)[5],
        "stopped"
    );

    // The token from the environment.
    let out = cli_in(
        &r.dir.path().join("elsewhere"),
        &["start", "app", "0", "--admin", &admin],
        &[("ROUSE_ADMIN_TOKEN", "s3cret")],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    wait_status_state(&r, "app", 0, "ready");
    // And from the config file, with the address.
    let out = r.cli(&["stop", "app", "-c", r.config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    wait_status_state(&r, "app", 0, "stopped");
}

/// `rouse reload` asks the running rouse to re-read its file: errors come back to the terminal
/// with their positions (exit 1, the old config keeps running); a valid file is applied (exit 0).
#[test]
fn reload_shows_the_errors_of_an_invalid_file_and_applies_a_valid_one() {
    let (r, _) = Running::start(Some("s3cret"));
    let config = r.config.to_str().unwrap().to_owned();
    let good = std::fs::read_to_string(&r.config).unwrap();

    std::fs::write(
        &r.config,
        good.replace("idle_timeout = \"5m\"", "idle_timeout = \"5 parsecs\""),
    )
    .unwrap();
    let out = r.cli(&["reload", "-c", &config]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains(&format!("{config}:")), "{out:?}");
    assert!(stderr(&out).contains("5 parsecs"), "{out:?}");
    // Still serving the old config: "app" is there.
    assert_eq!(
        status_row(
            &stdout(&r.cli(&["status", "--admin", &r.admin.to_string()])),
            "app",
            0
        )[5],
        "stopped"
    );

    std::fs::write(&r.config, good.replace("name = \"web\"", "name = \"site\"")).unwrap();
    let out = r.cli(&["reload", "-c", &config]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("configuration reloaded"), "{out:?}");
    let table = stdout(&r.cli(&["status", "--admin", &r.admin.to_string()]));
    assert!(table.contains("site") && !table.contains("web"), "{table}");
}

/// `--wait` follows the command to its outcome: ready, then stopped, each said with the time it
/// took; the server `start` chose by itself is the one waited for.
#[test]
fn start_and_stop_wait_for_ready_and_stopped() {
    let (r, app0) = Running::start(None);
    let admin = r.admin.to_string();
    let out = r.cli(&["start", "app", "--wait", "--admin", &admin]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains(&format!("starting server 0 ({app0})")),
        "{out:?}"
    );
    assert!(
        text.contains(&format!("app server 0 ({app0}) ready in ")),
        "{out:?}"
    );
    // Ready means ready: the server answers at once, no polling needed.
    assert!(TcpStream::connect(app0).is_ok(), "the server listens");
    assert_eq!(
        status_row(&stdout(&r.cli(&["status", "--admin", &admin])), "app", 0)[5],
        "ready"
    );

    // A server that is already up: nothing to wait for, still exit 0.
    let out = r.cli(&["start", "app", "0", "--wait", "--admin", &admin]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("ready in "), "{out:?}");

    let out = r.cli(&[
        "stop",
        "app",
        "--wait",
        "--timeout",
        "20s",
        "--admin",
        &admin,
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).contains(&format!("app server 0 ({app0}) stopped in ")),
        "{out:?}"
    );
    assert_eq!(
        status_row(&stdout(&r.cli(&["status", "--admin", &admin])), "app", 0)[5],
        "stopped"
    );

    // A refusal is still exit 1, with nothing waited for.
    let out = r.cli(&["stop", "app", "--wait", "--admin", &admin]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("no server"), "{out:?}");
}

/// A start that cannot succeed: `--wait` exits 1 with rouse's reason (from the journal), and
/// a wait bounded by `--timeout` exits 1 saying it gave up.
#[test]
fn start_wait_exits_1_with_the_reason_when_the_start_fails() {
    let [broken] = free_addrs();
    let (r, _) = Running::start_with(
        None,
        &format!(
            "[[upstream]]\nname = \"broken\"\nhosts = [\"broken.example\"]\n\
             [[upstream.server]]\naddress = \"{broken}\"\ncommand = \"/nonexistent\"\n"
        ),
    );
    let admin = r.admin.to_string();

    // The embedded supervisor tries 4 times (about 7 s) before giving up; --timeout is
    // shorter: the wait gives up first, saying where the server was.
    let out = r.cli(&[
        "start",
        "broken",
        "--wait",
        "--timeout",
        "300ms",
        "--admin",
        &admin,
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("gave up waiting"), "{out:?}");
    assert!(stderr(&out).contains("still starting"), "{out:?}");

    // Already starting: the wait follows the same attempt to its end.
    let out = r.cli(&["start", "broken", "0", "--wait", "--admin", &admin]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("broken server 0 ({broken}): start failed: ")),
        "{out:?}"
    );
    assert!(
        err.contains("exited with status 127"),
        "why it failed: {out:?}"
    );
}
