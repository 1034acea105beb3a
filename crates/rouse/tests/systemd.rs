//! rouse under systemd's eyes, without systemd: the test plays it. A unix datagram socket is
//! `NOTIFY_SOCKET` (READY, WATCHDOG, RELOADING, STOPPING), and a listening socket handed to
//! rouse as descriptor 3 with `LISTEN_FDS`/`LISTEN_PID` is what a `.socket` unit passes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use common::{ROUSE, WAIT, free_addrs};

/// What systemd would be told, message by message.
struct Notifications {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Notifications {
    fn bind(dir: &Path) -> (Notifications, String) {
        let path = dir.join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let n = Notifications {
            socket,
            seen: Vec::new(),
        };
        (n, path.to_str().unwrap().to_owned())
    }

    /// The first message from now on that `matches`, within [`WAIT`].
    fn wait_for(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let Ok(n) = self.socket.recv(&mut buf) else {
                continue;
            };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.seen.push(msg.clone());
            if matches(&msg) {
                return msg;
            }
        }
        panic!("no {what} in time; seen: {:?}", self.seen);
    }

    /// Reads whatever has been sent and not read yet.
    fn drain(&mut self) {
        self.socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.seen
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.socket.set_nonblocking(false).unwrap();
    }
}

/// Kills the rouse processes a test started if it fails half-way (they would hold the test
/// runner's output open).
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            if alive(*pid as i32) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// Whether `pid` runs (a zombie nobody reaped yet does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

fn has(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

fn kill(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// `rouse run -c file` told to notify `socket`, with `env` on top (and no inherited
/// `WATCHDOG_PID`).
fn notified_rouse(file: &str, socket: &str, env: &[(&str, &str)]) -> Child {
    Command::new(ROUSE)
        .args(["run", "-c", file])
        .env("NOTIFY_SOCKET", socket)
        .env_remove("WATCHDOG_PID")
        .envs(env.iter().copied())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rouse did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tiny HTTP/1.1 backend on a thread: answers every request with `body`.
fn backend(body: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in l.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(WAIT));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

fn get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, WAIT)?;
    s.set_read_timeout(Some(WAIT))?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn config(dir: &Path, listen: SocketAddr, server: SocketAddr) -> String {
    let path = dir.join("rouse.toml");
    std::fs::write(
        &path,
        format!(
            "[proxy]\nlisten = [\"{listen}\"]\nshutdown_timeout = \"5s\"\n\
             [[upstream]]\nname = \"app\"\nsupervisor = \"none\"\n\
             [[upstream.server]]\naddress = \"{server}\"\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn ready_watchdog_reloading_and_stopping_are_told_to_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let (mut notified, socket) = Notifications::bind(dir.path());
    let [listen] = free_addrs();
    let file = config(dir.path(), listen, backend("hello"));
    // 200 ms: a ping every 100 ms.
    let mut child = notified_rouse(&file, &socket, &[("WATCHDOG_USEC", "200000")]);
    let _guard = KillOnDrop(vec![child.id()]);
    let pid = child.id();

    let ready = notified.wait_for("READY=1", |m| has(m, "READY=1"));
    assert_eq!(ready, format!("READY=1\nMAINPID={pid}\n"));
    for _ in 0..3 {
        notified.wait_for("WATCHDOG=1", |m| has(m, "WATCHDOG=1"));
    }

    kill(child.id(), "HUP");
    let reloading = notified.wait_for("RELOADING=1", |m| has(m, "RELOADING=1"));
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC: {reloading}"));
    assert!(usec.parse::<u64>().unwrap() > 0, "{reloading}");
    let reloaded = notified.wait_for("READY=1 after the reload", |m| has(m, "READY=1"));
    assert!(
        reloaded.contains("STATUS=serving; configuration reloaded"),
        "{reloaded}"
    );
    // Still pinging after the reload.
    notified.wait_for("WATCHDOG=1", |m| has(m, "WATCHDOG=1"));

    kill(child.id(), "TERM");
    notified.wait_for("STOPPING=1", |m| has(m, "STOPPING=1"));
    assert!(wait_exit(&mut child).success());
}

#[test]
fn an_upgrade_hands_the_main_pid_over_without_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let (mut notified, socket) = Notifications::bind(dir.path());
    let [listen] = free_addrs();
    let file = config(dir.path(), listen, backend("hello"));
    let mut old = notified_rouse(&file, &socket, &[]);
    let mut started = KillOnDrop(vec![old.id()]);
    let first = notified.wait_for("READY=1", |m| has(m, "READY=1"));
    assert_eq!(first, format!("READY=1\nMAINPID={}\n", old.id()));

    kill(old.id(), "USR2");
    let old_pid = format!("MAINPID={}", old.id());
    let taken = notified.wait_for("the new MAINPID", |m| {
        m.lines().any(|l| l.starts_with("MAINPID=") && l != old_pid)
    });
    assert!(has(&taken, "READY=1"), "{taken}");
    let new: i32 = taken
        .lines()
        .find_map(|l| l.strip_prefix("MAINPID="))
        .and_then(|p| p.parse().ok())
        .unwrap();
    started.0.push(new.unsigned_abs());
    // The old process drains and exits: systemd must not hear it stop the service.
    assert!(wait_exit(&mut old).success());
    notified.drain();
    assert!(
        !notified.seen.iter().any(|m| has(m, "STOPPING=1")),
        "{:?}",
        notified.seen
    );
    // Only the new main process says it stops.
    kill(new.unsigned_abs(), "TERM");
    notified.wait_for("STOPPING=1", |m| has(m, "STOPPING=1"));
    let deadline = Instant::now() + WAIT;
    while alive(new) {
        assert!(Instant::now() < deadline, "the new rouse did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_watchdog_pid_of_another_process_gets_no_pings() {
    let dir = tempfile::tempdir().unwrap();
    let (mut notified, socket) = Notifications::bind(dir.path());
    let [listen] = free_addrs();
    let file = config(dir.path(), listen, backend("hello"));
    let env = [("WATCHDOG_USEC", "100000"), ("WATCHDOG_PID", "1")];
    let mut child = notified_rouse(&file, &socket, &env);
    let _guard = KillOnDrop(vec![child.id()]);
    notified.wait_for("READY=1", |m| has(m, "READY=1"));
    // Five intervals with no ping, then the stop (whatever came meanwhile is in `seen`).
    std::thread::sleep(Duration::from_millis(500));
    kill(child.id(), "TERM");
    notified.wait_for("STOPPING=1", |m| has(m, "STOPPING=1"));
    assert!(wait_exit(&mut child).success());
    assert!(
        !notified.seen.iter().any(|m| has(m, "WATCHDOG=1")),
        "{:?}",
        notified.seen
    );
}

/// Starts rouse as systemd would with `sockets` passed from descriptor 3 on: through `sh`,
/// which puts the socket given as its stdin at descriptor 3 and execs rouse with its own pid
/// as `LISTEN_PID` (std's `Command` can place a descriptor only at 0, 1 or 2 without unsafe
/// code).
fn activated(file: &str, socket: TcpListener, names: &str, log: &Path) -> Child {
    Command::new("sh")
        .args([
            "-c",
            "exec 3<&0 </dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" run -c \"$1\"",
            ROUSE,
            file,
        ])
        .env("LISTEN_FDNAMES", names)
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(socket)))
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn a_passed_socket_serves_the_listener_of_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let file = config(dir.path(), addr, backend("through the passed socket"));
    let log = dir.path().join("rouse.log");
    let mut child = activated(&file, socket, "rouse-http", &log);
    let _guard = KillOnDrop(vec![child.id()]);
    // The socket listens from the start: the first connect queues until rouse accepts.
    let answer = get(addr).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("through the passed socket"), "{answer}");
    kill(child.id(), "TERM");
    assert!(wait_exit(&mut child).success());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("listening on the sockets systemd passed")
            && logged.contains(&format!("fd 3 (\\\"rouse-http\\\") {addr}")),
        "{logged}"
    );
}

#[test]
fn backends_do_not_inherit_a_passed_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let [backend] = free_addrs();
    let seen = dir.path().join("fd3");
    // The backend's shell says what its descriptor 3 is (nothing: readlink fails), then
    // serves.
    let command = format!(
        "readlink /proc/$$/fd/3 > {} 2>&1; exec python3 -m http.server --bind 127.0.0.1 {}",
        seen.display(),
        backend.port()
    );
    let file = dir.path().join("rouse.toml");
    std::fs::write(
        &file,
        format!(
            "[proxy]\nlisten = [\"{addr}\"]\nshutdown_timeout = \"5s\"\n\
             [[upstream]]\nname = \"app\"\nstart_timeout = \"15s\"\nready = \"tcp\"\n\
             [[upstream.server]]\naddress = \"{backend}\"\ncommand = {command:?}\n\
             stop_signal = \"INT\"\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("rouse.log");
    let mut child = activated(file.to_str().unwrap(), socket, "rouse-http", &log);
    let _guard = KillOnDrop(vec![child.id()]);
    // Wakes the backend through the passed socket.
    let answer = get(addr).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    kill(child.id(), "TERM");
    assert!(wait_exit(&mut child).success());
    let fd3 = std::fs::read_to_string(&seen).unwrap();
    assert!(
        !fd3.contains("socket:"),
        "the backend has the socket as fd 3: {fd3}"
    );
}

#[test]
fn a_passed_socket_that_matches_no_listener_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let [other] = free_addrs();
    let file = config(dir.path(), other, backend("never"));
    let log = dir.path().join("rouse.log");
    let mut child = activated(&file, socket, "stray", &log);
    let _guard = KillOnDrop(vec![child.id()]);
    assert_eq!(wait_exit(&mut child).code(), Some(2));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(&format!(
            "socket activation: fd 3 (\"stray\") is bound to {addr}, which no listener of the config names"
        )),
        "{logged}"
    );
}
