//! The `rouse` command as users run it: exit codes, error output, signals.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const ROUSE: &str = env!("CARGO_BIN_EXE_rouse");
/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(20);

fn rouse(args: &[&str]) -> Output {
    Command::new(ROUSE).args(args).output().expect("rouse runs")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

/// A port no other call here returned, below the range `bind(0)` draws from: two calls never
/// agree, and a listener bound to port 0 later never takes it.
fn free_addr() -> SocketAddr {
    rouse_e2e::unique_addr()
}

/// A tiny HTTP/1.1 server on a thread: answers every request with `body` after `delay`.
fn static_server(body: &'static str, delay: Duration) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || serve_one(conn, body, delay));
        }
    });
    addr
}

fn serve_one(mut conn: TcpStream, body: &str, delay: Duration) {
    let _ = conn.set_read_timeout(Some(WAIT));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            std::thread::sleep(delay);
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes());
            return;
        }
    }
}

/// GET / through `addr`; returns (status line, body).
fn get(addr: SocketAddr) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, WAIT)?;
    s.set_read_timeout(Some(WAIT))?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.lines().next().unwrap_or("").to_owned();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}

fn wait_listening(addr: SocketAddr, child: &mut Child) {
    for _ in 0..400 {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("rouse exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("rouse did not listen on {addr}");
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..800 {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    panic!("rouse did not exit in time");
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig}");
}

fn static_config(listen: SocketAddr, server: SocketAddr) -> String {
    format!(
        "[proxy]\nlisten = [\"{listen}\"]\nshutdown_timeout = \"10s\"\n\
         [[upstream]]\nname = \"app\"\nsupervisor = \"none\"\n\
         [[upstream.server]]\naddress = \"{server}\"\n"
    )
}

#[test]
fn check_accepts_a_valid_file_and_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "ok.toml",
        &static_config(free_addr(), free_addr()),
    );
    let out = rouse(&["check", "-c", &f]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("upstream \"app\""), "{text}");
    assert!(text.contains("none (static servers)"), "{text}");
}

#[test]
fn check_reports_every_error_with_file_line_column_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[proxy]\nlisten = [\"127.0.0.1:8080\"]\n\n\
                [[upstream]]\nname = \"a\"\nbalancer = \"fair\"\nsupervisor = \"none\"\n\
                [[upstream.server]]\naddress = \"127.0.0.1:9101\"\n\n\
                [[upstream]]\nname = \"b\"\nidle_timeout = \"5 parsecs\"\nsupervisor = \"none\"\n\
                [[upstream.server]]\naddress = \"not-an-address\"\n";
    let f = write(dir.path(), "bad.toml", text);
    let out = rouse(&["check", "-c", &f]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 3, "all errors at once:\n{err}");
    for l in &lines {
        assert!(l.starts_with(&format!("{f}:")), "FILE:LINE:COL form: {l}");
    }
    assert!(
        err.contains(&format!("{f}:6:1:")) && err.contains("balancer"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{f}:13:16:")) && err.contains("5 parsecs"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{f}:16:11:")) && err.contains("not-an-address"),
        "{err}"
    );
    // Two default upstreams with the same prefix are ambiguous.
    assert!(
        err.contains(&format!("{f}:12:8: two default upstreams")),
        "{err}"
    );
}

#[test]
fn a_missing_file_is_a_config_error() {
    let out = rouse(&["check", "-c", "/nonexistent/rouse.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/rouse.toml"));
    let out = rouse(&["run", "-c", "/nonexistent/rouse.toml"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn run_exits_2_when_the_port_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let f = write(
        dir.path(),
        "r.toml",
        &static_config(taken.local_addr().unwrap(), free_addr()),
    );
    let mut child = Command::new(ROUSE)
        .args(["run", "-c", &f])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(2));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("cannot listen on"), "{err}");
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let server = static_server("slow answer", Duration::from_millis(1500));
    let listen = free_addr();
    let f = write(dir.path(), "r.toml", &static_config(listen, server));
    let mut child = Command::new(ROUSE)
        .args(["run", "-c", &f])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(listen, &mut child);
    let in_flight = std::thread::spawn(move || get(listen));
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "TERM");
    let (status, body) = in_flight
        .join()
        .unwrap()
        .expect("in-flight request answered");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "slow answer");
    assert_eq!(wait_exit(&mut child).code(), Some(0));
}

#[test]
fn sighup_reloads_a_valid_file_and_keeps_the_old_one_when_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let one = static_server("one", Duration::ZERO);
    let two = static_server("two", Duration::ZERO);
    let listen = free_addr();
    let f = write(dir.path(), "r.toml", &static_config(listen, one));
    let mut child = Command::new(ROUSE)
        .args(["run", "-c", &f])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(listen, &mut child);
    assert_eq!(get(listen).unwrap().1, "one");

    // Invalid: refused, the running config keeps serving.
    write(dir.path(), "r.toml", "[[upstream]]\nname = \n");
    signal(&child, "HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(listen).unwrap().1, "one");
    assert!(child.try_wait().unwrap().is_none(), "still running");

    // Valid: applied.
    write(dir.path(), "r.toml", &static_config(listen, two));
    signal(&child, "HUP");
    let mut body = String::new();
    for _ in 0..200 {
        body = get(listen).unwrap().1;
        if body == "two" {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(body, "two");
    signal(&child, "TERM");
    assert_eq!(wait_exit(&mut child).code(), Some(0));
}

/// Pids of live processes whose command line is exactly `argv`.
fn pids_of(argv: &[&str]) -> Vec<u32> {
    let want = argv.join("\0") + "\0";
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Zombies (state Z) are dead already.
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'));
        if cmdline == want.as_bytes() && !zombie {
            out.push(pid);
        }
    }
    out
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..800 {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn embedded_children_never_outlive_rouse() {
    let dir = tempfile::tempdir().unwrap();
    // A marker no other process has, so the test finds exactly its own child.
    let marker = format!("{}", 100_000 + std::process::id());
    let argv = ["sleep", marker.as_str()];
    let listen = free_addr();
    let text = format!(
        "[proxy]\nlisten = [\"{listen}\"]\n\
         [[upstream]]\nname = \"keep\"\nmin_servers = 1\nready = \"supervisor\"\n\
         [[upstream.server]]\naddress = \"{}\"\ncommand = [\"sleep\", \"{marker}\"]\nstartsecs = \"0s\"\n",
        free_addr()
    );
    let f = write(dir.path(), "r.toml", &text);

    // 1. A rouse killed with SIGKILL leaves its child behind...
    let mut first = Command::new(ROUSE)
        .args(["run", "-c", &f])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let orphan = wait_for("the first child", || pids_of(&argv).first().copied());
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        pids_of(&argv).contains(&orphan),
        "SIGKILL gives rouse no chance to clean up"
    );

    // 2. ...which the next rouse with the same config cleans up before starting its own.
    let mut second = Command::new(ROUSE)
        .args(["run", "-c", &f])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the orphan to be killed", || {
        (!pids_of(&argv).contains(&orphan)).then_some(())
    });
    let child = wait_for("the second child", || pids_of(&argv).first().copied());
    assert_ne!(child, orphan);

    // 3. SIGTERM stops rouse and its children.
    signal(&second, "TERM");
    assert_eq!(wait_exit(&mut second).code(), Some(0));
    assert!(pids_of(&argv).is_empty(), "children are stopped with rouse");
}

/// SIGHUP on the real binary applies a change to a supervised upstream: the server that left
/// the file is stopped, the new one started (`min_servers`), the one that stayed is left alone.
#[test]
fn sighup_swaps_supervised_servers() {
    let dir = tempfile::tempdir().unwrap();
    let markers: Vec<String> = (1..=3)
        .map(|k| format!("{}", 200_000 + 10 * std::process::id() + k))
        .collect();
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let listen = free_addr();
    let config = |servers: &[usize]| {
        let mut text = format!(
            "[proxy]\nlisten = [\"{listen}\"]\n\
             [[upstream]]\nname = \"keep\"\nmin_servers = {}\nready = \"supervisor\"\n",
            servers.len()
        );
        for &k in servers {
            text.push_str(&format!(
                "[[upstream.server]]\naddress = \"{}\"\ncommand = [\"sleep\", \"{}\"]\nstartsecs = \"0s\"\n",
                addrs[k], markers[k]
            ));
        }
        text
    };
    let argv = |k: usize| ["sleep", markers[k].as_str()];
    let f = write(dir.path(), "r.toml", &config(&[0, 1]));
    let mut child = Command::new(ROUSE)
        .args(["run", "-c", &f])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = wait_for("server 0", || pids_of(&argv(0)).first().copied());
    let kept = wait_for("server 1", || pids_of(&argv(1)).first().copied());

    write(dir.path(), "r.toml", &config(&[1, 2]));
    signal(&child, "HUP");
    let new = wait_for("server 2", || pids_of(&argv(2)).first().copied());
    wait_for("server 0 to stop", || {
        (!pids_of(&argv(0)).contains(&first)).then_some(())
    });
    assert_eq!(
        pids_of(&argv(1)),
        [kept],
        "the server that stayed kept its process"
    );
    assert!(child.try_wait().unwrap().is_none(), "still running");

    signal(&child, "TERM");
    assert_eq!(wait_exit(&mut child).code(), Some(0));
    assert!(pids_of(&argv(1)).is_empty() && !pids_of(&argv(2)).contains(&new));
}

/// `rouse reload` says what changed, one line per upstream that did: servers kept, added,
/// replaced (and why) and removed; upstreams added and removed; and `no changes` for the same
/// file again.
#[test]
fn reload_prints_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let [listen, admin, a, b, c, d, s] = [(); 7].map(|_| free_addr());
    let server = |addr: SocketAddr, command: &str| {
        format!("[[upstream.server]]\naddress = \"{addr}\"\ncommand = [\"sleep\", \"{command}\"]\n")
    };
    let head = format!(
        "[proxy]\nlisten = [\"{listen}\"]\n[admin]\nlisten = \"{admin}\"\n\
         [[upstream]]\nname = \"app\"\n"
    );
    let stat = |name: &str| {
        format!(
            "[[upstream]]\nname = \"{name}\"\nhosts = [\"{name}.example\"]\nsupervisor = \"none\"\n\
             [[upstream.server]]\naddress = \"{s}\"\n"
        )
    };
    let before = format!(
        "{head}{}{}{}{}",
        server(a, "1000"),
        server(b, "1000"),
        server(d, "1000"),
        stat("old")
    );
    let f = write(dir.path(), "r.toml", &before);
    let mut child = Command::new(ROUSE)
        .args(["run", "-c", &f])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(admin, &mut child);

    // a: new command (replaced); b: kept; c: added; d: removed; "old" gone, "new" there.
    let after = format!(
        "{head}{}{}{}{}",
        server(a, "2000"),
        server(b, "1000"),
        server(c, "1000"),
        stat("new")
    );
    write(dir.path(), "r.toml", &after);
    let out = rouse(&["reload", "-c", &f]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        text,
        format!(
            "configuration reloaded\n\
             upstream \"app\": changed; servers kept 1, added 1 ({c}), \
             replaced 1 ({a}: command changed), removed 1 ({d})\n\
             upstream \"new\": added (1 server)\n\
             upstream \"old\": removed (1 server)\n"
        )
    );

    let out = rouse(&["reload", "-c", &f]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "configuration reloaded\nno changes\n"
    );

    signal(&child, "TERM");
    assert_eq!(wait_exit(&mut child).code(), Some(0));
}

/// A password written into a supervisord url and a value holding a newline: `rouse check`, a
/// refused reload (the 422 of `POST /reload`, printed by `rouse reload`) and rouse's own log all
/// show one positioned line per error, with the password masked.
#[test]
fn errors_mask_passwords_and_escape_newlines_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let [listen, admin, server] = [(); 3].map(|_| free_addr());
    let good = format!(
        "[admin]\nlisten = \"{admin}\"\n{}",
        static_config(listen, server)
    );
    let bad = format!(
        "{good}[supervisors.s]\nurl = \"http://ops:hunter2@127.0.0.1:9001/RPC2\"\n\
         [[upstream]]\nname = \"b\"\nhosts = [\"b.example\"]\nsupervisor = \"none\"\n\
         idle_timeout = \"5s\\nforged: line\"\n[[upstream.server]]\naddress = \"{server}\"\n"
    );
    let f = write(dir.path(), "r.toml", &good);
    let log = dir.path().join("rouse.log");
    let mut child = Command::new(ROUSE)
        .args(["run", "-c", &f])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_listening(admin, &mut child);
    write(dir.path(), "r.toml", &bad);

    let check = rouse(&["check", "-c", &f]);
    let reload = rouse(&["reload", "-c", &f]);
    signal(&child, "TERM");
    assert_eq!(wait_exit(&mut child).code(), Some(0));
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    assert_ne!(reload.status.code(), Some(0), "{reload:?}");

    let logged = std::fs::read_to_string(&log).unwrap();
    for (what, text) in [
        ("check", String::from_utf8_lossy(&check.stderr).into_owned()),
        (
            "reload",
            format!(
                "{}{}",
                String::from_utf8_lossy(&reload.stdout),
                String::from_utf8_lossy(&reload.stderr)
            ),
        ),
        ("log", logged),
    ] {
        assert!(
            !text.contains("hunter2"),
            "{what} shows the password:\n{text}"
        );
        assert!(text.contains("ops:***@127.0.0.1:9001"), "{what}:\n{text}");
        assert!(
            !text.contains("\nforged: line"),
            "{what} forged a line:\n{text}"
        );
        assert!(text.contains(r"5s\nforged: line"), "{what}:\n{text}");
    }
    for line in String::from_utf8_lossy(&check.stderr).lines() {
        assert!(
            line.starts_with(&format!("{f}:")),
            "FILE:LINE:COL form: {line}"
        );
    }
}
