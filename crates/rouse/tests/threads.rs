//! `[proxy] threads`: the threads client connections are served on, as `rouse run` starts
//! them, seen from outside (thread names in /proc, answers on many connections, a graceful
//! stop that waits for a request in flight on one of them).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;
use common::{Killed, ROUSE, WAIT, free_addrs};

/// A keep-alive HTTP/1.1 backend on threads: answers `GET /slow` after 700 ms, anything else
/// at once, with `ok PATH`.
fn backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(WAIT));
                let mut reader = BufReader::new(conn);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                    // The rest of the head (requests here have no body).
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                    }
                    if path == "/slow" {
                        std::thread::sleep(Duration::from_millis(700));
                    }
                    let body = format!("ok {path}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if reader.get_mut().write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One request on a keep-alive connection; the status line and body.
fn request(conn: &mut BufReader<TcpStream>, path: &str) -> (String, String) {
    conn.get_mut()
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes())
        .unwrap();
    let mut status = String::new();
    conn.read_line(&mut status).unwrap();
    let mut length = 0;
    loop {
        let mut h = String::new();
        conn.read_line(&mut h).unwrap();
        if h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).unwrap();
    (
        status.trim_end().to_owned(),
        String::from_utf8(body).unwrap(),
    )
}

fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    BufReader::new(s)
}

/// Starts `rouse run` with `threads` in front of `server`, once it accepts on the returned
/// address.
fn run(dir: &std::path::Path, threads: usize, server: SocketAddr) -> (Killed, SocketAddr) {
    let [listen] = free_addrs();
    let config = dir.join("rouse.toml");
    std::fs::write(
        &config,
        format!(
            "[proxy]\nlisten = [\"{listen}\"]\nthreads = {threads}\nshutdown_timeout = \"10s\"\n\
             [log]\naccess_log = false\n\
             [[upstream]]\nname = \"app\"\nsupervisor = \"none\"\n\
             [[upstream.server]]\naddress = \"{server}\"\n"
        ),
    )
    .unwrap();
    let child = Command::new(ROUSE)
        .args(["run", "-c", config.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    wait_for(&format!("rouse listening on {listen}"), || {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("rouse exited early: {status}");
        }
        TcpStream::connect(listen).ok()
    });
    (child, listen)
}

/// Polls `f` every 25 ms until it gives a value, for at most [`WAIT`].
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..WAIT.as_millis() / 25 {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

/// The names of the process's threads, sorted.
fn thread_names(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim_end().to_owned())
        .collect();
    names.sort();
    names
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    wait_for("rouse to exit", || child.try_wait().unwrap())
}

#[test]
fn threads_3_serves_connections_on_three_worker_threads_and_drains_them_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, listen) = run(dir.path(), 3, backend());
    // A thread names itself once it runs, which may be after rouse listens.
    let pid = child.0.id();
    wait_for("three worker threads", || {
        let workers: Vec<String> = thread_names(pid)
            .into_iter()
            .filter(|n| n.starts_with("rouse-worker-"))
            .collect();
        (workers == ["rouse-worker-0", "rouse-worker-1", "rouse-worker-2"]).then_some(())
    });

    // Nine connections open at once, so every worker has some; each serves several requests.
    let mut conns: Vec<_> = (0..9).map(|_| connect(listen)).collect();
    for round in 0..3 {
        for (i, conn) in conns.iter_mut().enumerate() {
            let path = format!("/c{i}/r{round}");
            let (status, body) = request(conn, &path);
            assert_eq!(status, "HTTP/1.1 200 OK");
            assert_eq!(body, format!("ok {path}"));
        }
    }

    // A request in flight on one of them when SIGTERM comes is answered before rouse exits.
    let mut slow = conns.pop().unwrap();
    let in_flight = std::thread::spawn(move || request(&mut slow, "/slow"));
    std::thread::sleep(Duration::from_millis(200));
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM");
    let (status, body) = in_flight.join().unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "ok /slow");
    assert_eq!(wait_exit(&mut child.0).code(), Some(0));
}

#[test]
fn threads_1_runs_no_worker_threads() {
    let dir = tempfile::tempdir().unwrap();
    let (child, listen) = run(dir.path(), 1, backend());
    let (status, body) = request(&mut connect(listen), "/one");
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ok /one")
    );
    let names = thread_names(child.0.id());
    assert!(
        !names.iter().any(|n| n.starts_with("rouse-worker")),
        "{names:?}"
    );
}
