//! `rouse check --online` and `rouse reload` against a real supervisord (Debian's `supervisor`
//! package, which `scripts/test.sh` installs): whether it knows every program the file names.
//!
//! The supervisord here is a bare one of the test's own (a config in a temporary directory, a
//! free loopback port, programs that never start): all these commands do is ask it which
//! programs it has. rouse-e2e's harness is not used because the `rouse` binary is only
//! reachable (`CARGO_BIN_EXE_rouse`) from this package's tests.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

mod common;

use common::{Killed, ROUSE, WAIT, free_addrs, stderr, stdout};

/// Polls `ready` every 25 ms until it holds, for at most [`WAIT`].
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = SystemTime::now() + WAIT;
    while !ready() {
        assert!(SystemTime::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A supervisord with programs `programs` (none started), killed on drop.
struct Supervisord {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Supervisord {
    fn spawn(programs: &[&str]) -> Supervisord {
        let dir = tempfile::tempdir().unwrap();
        let [addr] = free_addrs();
        let d = dir.path().display();
        let mut conf = format!(
            "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\n\
             pidfile={d}/supervisord.pid\nchildlogdir={d}\n\
             [inet_http_server]\nport={addr}\n\
             [rpcinterface:supervisor]\n\
             supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        );
        for p in programs {
            conf.push_str(&format!(
                "[program:{p}]\ncommand=sleep 1000\nautostart=false\nautorestart=false\n"
            ));
        }
        let path = dir.path().join("supervisord.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("supervisord")
            .arg("-n")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("supervisord runs (scripts/test.sh installs it)");
        let mut sd = Supervisord {
            child,
            addr,
            _dir: dir,
        };
        wait_until("supervisord to listen", || {
            if let Some(status) = sd.child.try_wait().unwrap() {
                panic!("supervisord exited early: {status}");
            }
            TcpStream::connect(sd.addr).is_ok()
        });
        sd
    }

    fn section(&self, name: &str) -> String {
        format!(
            "[supervisors.{name}]\nurl = \"http://{}/RPC2\"\ntimeout = \"3s\"\n",
            self.addr
        )
    }
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An upstream of supervisord `sup` whose servers are `programs`.
fn upstream(name: &str, sup: &str, programs: &[&str]) -> String {
    let mut s = format!("[[upstream]]\nname = {name:?}\nsupervisor = {sup:?}\n");
    for (p, a) in programs.iter().zip(free_addrs::<8>()) {
        s.push_str(&format!(
            "[[upstream.server]]\naddress = \"{a}\"\nprogram = {p:?}\n"
        ));
    }
    s
}

fn rouse(dir: &Path, args: &[&str]) -> Output {
    Command::new(ROUSE)
        .args(args)
        .current_dir(dir)
        .env_remove("ROUSE_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("rouse runs")
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let f = dir.join("rouse.toml");
    std::fs::write(&f, text).unwrap();
    f
}

#[test]
fn check_online_names_each_program_supervisord_does_not_know() {
    let sd = Supervisord::spawn(&["web", "app0"]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{}/RPC2", sd.addr);

    // Every program known: 0.
    let f = write(
        dir.path(),
        &format!(
            "{}{}",
            sd.section("main"),
            upstream("app", "main", &["app0", "web"])
        ),
    );
    let file = f.to_str().unwrap();
    let out = rouse(dir.path(), &["check", "--online", "-c", file]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("every program is known"), "{out:?}");

    // One known, one not: 1, naming the unknown one (and only it), with the file.
    let f = write(
        dir.path(),
        &format!(
            "{}{}",
            sd.section("main"),
            upstream("app", "main", &["app0", "app2"])
        ),
    );
    let file = f.to_str().unwrap();
    let out = rouse(dir.path(), &["check", "--online", "-c", file]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{file}: upstream \"app\" server 1: program \"app2\" is unknown to supervisord \
             \"main\" ({url})"
        )),
        "{out:?}"
    );
    assert!(!err.contains("\"app0\""), "app0 is known: {out:?}");

    // Without --online, nothing is asked: the file is valid.
    let out = rouse(dir.path(), &["check", "-c", file]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn check_online_exits_2_when_a_supervisord_cannot_be_asked() {
    let dir = tempfile::tempdir().unwrap();
    let [closed] = free_addrs();
    let f = write(
        dir.path(),
        &format!(
            "[supervisors.gone]\nurl = \"http://{closed}/RPC2\"\ntimeout = \"3s\"\n{}",
            upstream("app", "gone", &["app0"])
        ),
    );
    let out = rouse(
        dir.path(),
        &["check", "--online", "-c", f.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cannot ask supervisord \"gone\" (http://{closed}/RPC2)"
        )),
        "which one: {out:?}"
    );
    assert!(err.contains("refused"), "why: {out:?}");

    // Embedded and static upstreams have nobody to ask.
    let [a, b] = free_addrs();
    let f = write(
        dir.path(),
        &format!(
            "[[upstream]]\nname = \"app\"\n[[upstream.server]]\naddress = \"{a}\"\n\
             command = \"true\"\n\
             [[upstream]]\nname = \"web\"\nhosts = [\"web.example\"]\nsupervisor = \"none\"\n\
             [[upstream.server]]\naddress = \"{b}\"\n"
        ),
    );
    let out = rouse(
        dir.path(),
        &["check", "--online", "-c", f.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("no supervisord to ask"), "{out:?}");
}

/// A reload is applied whatever supervisord says (it is a valid file), and the programs
/// supervisord does not know come back as warnings to whoever ran `rouse reload`.
#[test]
fn reload_warns_about_programs_supervisord_does_not_know() {
    let sd = Supervisord::spawn(&["app0"]);
    let dir = tempfile::tempdir().unwrap();
    let [listen, admin] = free_addrs();
    let head = format!(
        "[proxy]\nlisten = [\"{listen}\"]\n[admin]\nlisten = \"{admin}\"\n{}",
        sd.section("main")
    );
    let f = write(
        dir.path(),
        &format!("{head}{}", upstream("app", "main", &["app0"])),
    );
    let file = f.to_str().unwrap().to_owned();
    let mut child = Killed(
        Command::new(ROUSE)
            .args(["run", "-c", &file])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rouse runs"),
    );
    wait_until("rouse's admin API to listen", || {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("rouse exited early: {status}");
        }
        TcpStream::connect(admin).is_ok()
    });

    // Every program known: no warning.
    let out = rouse(dir.path(), &["reload", "-c", &file]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!stdout(&out).contains("warning"), "{out:?}");

    write(
        dir.path(),
        &format!("{head}{}", upstream("app", "main", &["app0", "app1"])),
    );
    let out = rouse(dir.path(), &["reload", "-c", &file]);
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    assert_eq!(out.status.code(), Some(0), "applied: {out:?}");
    let text = stdout(&out);
    assert!(text.contains("configuration reloaded"), "{out:?}");
    assert!(
        text.contains(&format!(
            "warning: {file}: upstream \"app\" server 1: program \"app1\" is unknown to \
             supervisord \"main\""
        )),
        "{out:?}"
    );
    let deadline = SystemTime::now() + WAIT;
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            SystemTime::now() < deadline,
            "rouse did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}
