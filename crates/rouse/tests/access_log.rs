//! The access log of a real `rouse` process in front of a real backend, seen in its file:
//! every field of a request, the JSON format, `X-Request-Id` made or kept and forwarded,
//! the status filter and sampling, and a reopen on SIGUSR1 under load that loses and
//! duplicates no line (and that reopens the embedded children's log files too).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::{ROUSE, WAIT, free_addrs};

/// A `rouse run` of a config whose access log goes to `access.log` in a temporary directory.
struct Rouse {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Rouse {
    async fn start(backend: SocketAddr, log: &str, threads: usize) -> Rouse {
        Rouse::start_with(backend, log, threads, "").await
    }

    /// [`Rouse::start`], with `upstream` added to the upstream's keys.
    async fn start_with(backend: SocketAddr, log: &str, threads: usize, upstream: &str) -> Rouse {
        let dir = tempfile::tempdir().unwrap();
        let [addr] = free_addrs::<1>();
        let config = format!(
            "[proxy]\nlisten = [\"{addr}\"]\nthreads = {threads}\n\
             [log]\naccess_log = \"{}\"\n{log}\n\
             [[upstream]]\nname = \"app\"\nsupervisor = \"none\"\n{upstream}\n\
             [[upstream.server]]\naddress = \"{backend}\"\n",
            dir.path().join("access.log").display()
        );
        Rouse::run(dir, addr, &config).await
    }

    /// `rouse run` of `config` (written in `dir`), listening on `addr`.
    async fn run(dir: tempfile::TempDir, addr: SocketAddr, config: &str) -> Rouse {
        let path = dir.path().join("rouse.toml");
        std::fs::write(&path, config).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let child = Command::new(ROUSE)
            .arg("run")
            .arg("-c")
            .arg(&path)
            // 5 hours west of UTC all year: the offset is in every time.
            .env("TZ", "Etc/GMT+5")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let rouse = Rouse { child, dir, addr };
        rouse_e2e::wait_until("rouse to listen", WAIT, || async move {
            TcpStream::connect(addr).await.is_ok()
        })
        .await;
        rouse
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// SIGTERM, and the exit waited for (bounded).
    async fn stop(mut self) -> tempfile::TempDir {
        self.signal(Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(tokio::time::Instant::now() < deadline, "rouse did not stop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }
}

impl Drop for Rouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The file's lines once there are `n` (flushed every 100 ms).
async fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let path = path.to_owned();
    rouse_e2e::wait_until(&format!("{n} access-log lines"), WAIT, || {
        let got = lines(&path);
        async move { (got.len() >= n).then_some(got) }
    })
    .await
}

/// One answer read off a keep-alive connection: status, head (lower-cased names), body.
async fn exchange(s: &mut TcpStream, request: &[u8]) -> (u16, String, Vec<u8>) {
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        assert!(
            read_more(s, &mut buf).await,
            "closed within a head: {buf:?}"
        );
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + length {
        assert!(read_more(s, &mut buf).await, "closed within a body");
    }
    (status, head, buf[head_end..head_end + length].to_vec())
}

/// Appends what one read brings (within `WAIT`) to `buf`; false when the peer closed.
async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
        .await
        .unwrap()
        .unwrap();
    buf.extend_from_slice(&chunk[..n]);
    n > 0
}

/// Sends `request` on a new connection and reads until the server closes it: the answer's
/// head (lower-cased) and the bytes after it (a chunked body with its framing).
async fn one_shot(addr: SocketAddr, request: &[u8]) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let at = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&answer[..at]).to_ascii_lowercase();
    (head, answer[at..].to_vec())
}

/// `/headers`' JSON answer: what the backend received.
/// An h2c (prior knowledge) connection to `addr`, driven on a task of its own.
async fn h2c<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

fn seen(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

fn is_request_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_combined_line_has_every_field() {
    let backend = rouse_e2e::spawn_in_process("a").await;
    let rouse = Rouse::start(backend.addr(), "", 1).await;
    let mut s = TcpStream::connect(rouse.addr).await.unwrap();
    let (status, _, body) = exchange(
        &mut s,
        b"POST /echo?q=1&x=%22y%22&z=a/b HTTP/1.1\r\nHost: App.test:8080\r\n\
          Referer: http://ref.test/page?a=1\r\nUser-Agent: agent/1.0 (\"x\")\r\n\
          Content-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!((status, &body[..]), (200, &b"hello"[..]));
    let (status, _, body) =
        exchange(&mut s, b"GET /headers HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert_eq!(status, 200);
    let forwarded = seen(&body)["x-request-id"].as_str().unwrap().to_owned();
    assert!(is_request_id(&forwarded), "{forwarded}");

    let lines = wait_lines(&rouse.file(), 2).await;
    let line = &lines[0];
    // nginx's combined, then rouse's fields.
    let (time, rest) = line
        .strip_prefix("127.0.0.1 - - [")
        .and_then(|l| l.split_once("] "))
        .unwrap_or_else(|| panic!("{line}"));
    // 28/Nov/2026:10:00:00 -0500
    assert_eq!(time.len(), 26, "{time}");
    assert!(time.ends_with(" -0500"), "{time}");
    assert_eq!(&time[2..3], "/");
    assert_eq!(&time[11..12], ":");
    let expected = format!(
        "\"POST /echo?q=1&x=%22y%22&z=a/b HTTP/1.1\" 200 5 \
         \"http://ref.test/page?a=1\" \"agent/1.0 (\\x22x\\x22)\" host=\"App.test:8080\" \
         upstream=\"app\" server={} received=5 held_ms=0.000 upstream_ms=",
        backend.addr()
    );
    assert!(rest.starts_with(&expected), "{rest}\n{expected}");
    let fields: Vec<&str> = rest[expected.len()..].split(' ').collect();
    let three_decimals = |v: &str| {
        let (int, dec) = v.split_once('.').unwrap_or_else(|| panic!("{v}"));
        int.parse::<u64>().is_ok() && dec.len() == 3 && dec.parse::<u64>().is_ok()
    };
    assert_eq!(fields.len(), 3, "{rest}");
    assert!(three_decimals(fields[0]), "{rest}");
    let total = fields[1].strip_prefix("ms=").unwrap();
    assert!(three_decimals(total), "{rest}");
    let id = fields[2].strip_prefix("request_id=").unwrap();
    assert!(is_request_id(id), "{rest}");
    assert_ne!(id, forwarded);
    // The second request: the id the server saw is the one logged.
    assert!(
        lines[1].contains("\"GET /headers HTTP/1.1\" 200 ")
            && lines[1].ends_with(&format!(" request_id={forwarded}")),
        "{}",
        lines[1]
    );
    let stderr = rouse.stderr();
    assert!(
        !stderr.contains("127.0.0.1 - - ["),
        "lines on stderr too: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_and_request_ids_on_both_paths() {
    let backend = rouse_e2e::spawn_in_process("a").await;
    let rouse = Rouse::start(backend.addr(), "access_log_format = \"json\"", 1).await;
    // The fast path, with the client's id.
    let mut s = TcpStream::connect(rouse.addr).await.unwrap();
    let (status, _, body) = exchange(
        &mut s,
        b"GET /headers?a=1&b=%C3%A9 HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: client-id-1\r\n\
          User-Agent: ua \"q\"\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(seen(&body)["x-request-id"], "client-id-1");
    // Hyper's path (an absolute-form target is not the fast path's), with an id not kept.
    let (_, body) = one_shot(
        rouse.addr,
        b"GET http://app.test/headers?c=3 HTTP/1.0\r\nHost: app.test\r\n\
          X-Request-Id: bad id\r\n\r\n",
    )
    .await;
    let made = seen(&body)["x-request-id"].as_str().unwrap().to_owned();
    assert!(is_request_id(&made), "{made}");
    // Hyper's path keeps a sane one too.
    let (_, body) = one_shot(
        rouse.addr,
        b"GET http://app.test/headers HTTP/1.0\r\nHost: app.test\r\n\
          X-Request-Id: client-id-2\r\n\r\n",
    )
    .await;
    assert_eq!(seen(&body)["x-request-id"], "client-id-2");
    // HTTP/1.0 on the fast path: logged as what the client spoke.
    let (_, body) = one_shot(
        rouse.addr,
        b"GET /headers?d=4 HTTP/1.0\r\nHost: app.test\r\nX-Request-Id: client-id-3\r\n\r\n",
    )
    .await;
    assert_eq!(seen(&body)["x-request-id"], "client-id-3");

    let lines = wait_lines(&rouse.file(), 4).await;
    let v: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let first = &v[0];
    assert_eq!(first["remote_addr"], "127.0.0.1");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["target"], "/headers?a=1&b=%C3%A9");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["host"], "app.test");
    assert_eq!(first["status"], 200);
    assert!(first["bytes_sent"].as_u64().unwrap() > 0);
    assert_eq!(first["bytes_received"], 0);
    assert_eq!(first["referer"], "");
    assert_eq!(first["user_agent"], "ua \"q\"");
    assert_eq!(first["upstream"], "app");
    assert_eq!(first["server"], backend.addr().to_string());
    assert_eq!(first["request_id"], "client-id-1");
    assert!(first["held_ms"].is_f64() && first["upstream_ms"].is_f64() && first["ms"].is_f64());
    let time = first["time"].as_str().unwrap();
    // 2026-11-28T10:00:00-05:00
    assert!(time.len() == 25 && time.ends_with("-05:00"), "{time}");
    assert!(
        lines[0].contains("\"ms\":") && !lines[0].contains("e-"),
        "{}",
        lines[0]
    );
    let second = &v[1];
    assert_eq!(second["protocol"], "HTTP/1.0");
    assert_eq!(second["target"], "/headers?c=3");
    assert_eq!(second["request_id"], made.as_str());
    assert_eq!(v[2]["request_id"], "client-id-2");
    assert_eq!(
        (&v[3]["protocol"], &v[3]["target"], &v[3]["request_id"]),
        (
            &"HTTP/1.0".into(),
            &"/headers?d=4".into(),
            &"client-id-3".into()
        )
    );
}

/// Requests no upstream serves are logged too, as nginx logs every request: a 404 for a Host
/// no upstream takes, a 400 for a request with two Hosts (hyper's path) and one for a head
/// with a bare LF (the fast path's own refusal), each with its request line and with no
/// upstream and no server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_before_any_upstream_are_logged_without_one() {
    let backend = rouse_e2e::spawn_in_process("a").await;
    let rouse = Rouse::start_with(
        backend.addr(),
        "access_log_format = \"json\"",
        1,
        "hosts = [\"app.test\"]",
    )
    .await;
    let mut s = TcpStream::connect(rouse.addr).await.unwrap();
    let (status, _, _) = exchange(
        &mut s,
        b"GET /where?x=1 HTTP/1.1\r\nHost: other.test\r\nUser-Agent: scanner\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404);
    // Two Hosts: the fast path declines them to hyper's path, which reads them before any route.
    let (head, _) = one_shot(
        rouse.addr,
        b"GET /two HTTP/1.0\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
    )
    .await;
    assert!(
        head.starts_with("http/1.0 400") || head.starts_with("http/1.1 400"),
        "{head}"
    );
    let (head, _) = one_shot(
        rouse.addr,
        b"DELETE /lf HTTP/1.1\r\nHost: app.test\nX: y\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    let (status, _, _) = exchange(&mut s, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert_eq!(status, 200);

    let lines = wait_lines(&rouse.file(), 4).await;
    let v: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let with = |status: u64| {
        v.iter()
            .find(|e| e["status"] == status)
            .unwrap_or_else(|| panic!("no {status} line in {lines:#?}"))
    };
    let no_route = with(404);
    assert_eq!(no_route["target"], "/where?x=1");
    assert_eq!(no_route["host"], "other.test");
    assert_eq!(no_route["user_agent"], "scanner");
    assert_eq!(no_route["upstream"], serde_json::Value::Null);
    assert_eq!(no_route["server"], serde_json::Value::Null);
    assert_eq!(no_route["upstream_ms"], serde_json::Value::Null);
    assert!(is_request_id(no_route["request_id"].as_str().unwrap()));
    let refused = |target: &str| {
        v.iter()
            .find(|e| e["status"] == 400 && e["target"] == target)
            .unwrap_or_else(|| panic!("no 400 line for {target} in {lines:#?}"))
    };
    let two_hosts = refused("/two");
    assert_eq!(two_hosts["protocol"], "HTTP/1.0");
    assert_eq!(two_hosts["upstream"], serde_json::Value::Null);
    let bare_lf = refused("/lf");
    assert_eq!(bare_lf["method"], "DELETE");
    assert_eq!(bare_lf["upstream"], serde_json::Value::Null);
    assert_eq!(bare_lf["server"], serde_json::Value::Null);
    assert!(is_request_id(bare_lf["request_id"].as_str().unwrap()));
    let served = with(200);
    assert_eq!(served["upstream"], "app");
    assert_eq!(served["server"], backend.addr().to_string());
}

/// What hyper answers itself, before rouse's service sees a request, is logged as nginx logs
/// its own 400s: a head it cannot parse (a bad field name, a TLS hello on the plain port) 400,
/// one past its buffer or its field count 431, a request line past its URI limit 414; with
/// `"-"` for the request hyper does not show, no upstream, no server. None reaches a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answers_hyper_makes_itself_are_logged() {
    let backend = rouse_e2e::spawn_in_process("a").await;
    let dir = tempfile::tempdir().unwrap();
    let [addr] = free_addrs::<1>();
    // A head may be 128 KiB: hyper's buffer is as large, so a 70 KB URI meets hyper's own
    // URI limit (64 KiB) before its buffer's.
    let config = format!(
        "[proxy]\nlisten = [\"{addr}\"]\nthreads = 1\nmax_header_size = \"128KiB\"\n\
         [log]\naccess_log = \"{}\"\n\
         [[upstream]]\nname = \"app\"\nsupervisor = \"none\"\n\
         [[upstream.server]]\naddress = \"{}\"\n",
        dir.path().join("access.log").display(),
        backend.addr()
    );
    let rouse = Rouse::run(dir, addr, &config).await;
    let get = |target: &str, fields: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: app.test\r\n{fields}\r\n").into_bytes()
    };
    let many: String = (0..101).map(|i| format!("X-N{i}: {i}\r\n")).collect();
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "a space in a field name",
            get("/", "Bad Name: x\r\n"),
            "400",
        ),
        (
            "a TLS hello",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "a 200 KB field",
            get("/", &format!("X-Big: {}\r\n", "v".repeat(200_000))),
            "431",
        ),
        ("101 fields", get("/", &many), "431"),
        (
            "a 70 KB URI",
            get(&format!("/{}", "u".repeat(70_000)), ""),
            "414",
        ),
    ];
    for (what, request, status) in &cases {
        let answer = closing_answer(rouse.addr, request).await;
        let head = String::from_utf8_lossy(&answer);
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {head}"
        );
    }
    let mut s = TcpStream::connect(rouse.addr).await.unwrap();
    let (status, _, _) = exchange(&mut s, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert_eq!(status, 200);

    let lines = wait_lines(&rouse.file(), cases.len() + 1).await;
    assert_eq!(lines.len(), cases.len() + 1, "{lines:#?}");
    for (what, _, status) in &cases {
        let line = format!("\"-\" {status} 0 \"-\" \"-\" host=\"-\" upstream=- server=- ");
        let n = lines.iter().filter(|l| l.contains(&line)).count();
        let want = cases.iter().filter(|c| c.2 == *status).count();
        assert_eq!(n, want, "{what}: {line} in {lines:#?}");
    }
    assert!(
        lines.iter().any(|l| l.contains("\"GET / HTTP/1.1\" 200 ")),
        "{lines:#?}"
    );
    assert_eq!(
        backend.stats().requests,
        1,
        "only the good request reached the server"
    );
}

/// Sends `request` on a new connection and reads what comes back until the connection ends
/// (closed or reset: a server that closes with the rest of a long request unread resets it).
async fn closing_answer(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = tokio::time::timeout(WAIT, s.write_all(request)).await;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&chunk[..n]),
            Ok(_) => return answer,
            Err(_) => panic!(
                "no end within {WAIT:?}: {}",
                String::from_utf8_lossy(&answer)
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_statuses_named_are_logged() {
    let backend = rouse_e2e::spawn_in_process("a").await;
    let rouse = Rouse::start(backend.addr(), "access_log_status = [\"404\", \"5xx\"]", 1).await;
    let mut s = TcpStream::connect(rouse.addr).await.unwrap();
    for path in ["/", "/status/404", "/status/403", "/status/503", "/"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n");
        exchange(&mut s, request.as_bytes()).await;
    }
    // Shutdown writes what is buffered: the count is exact once rouse has exited.
    let dir = rouse.stop().await;
    let lines = lines(&dir.path().join("access.log"));
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].contains("\"GET /status/404 HTTP/1.1\" 404 "),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"GET /status/503 HTTP/1.1\" 503 "),
        "{}",
        lines[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_of_successes_and_every_error_are_logged() {
    let backend = rouse_e2e::spawn_in_process("a").await;
    let rouse = Rouse::start(backend.addr(), "access_log_sample = 0.2", 1).await;
    let mut s = TcpStream::connect(rouse.addr).await.unwrap();
    for i in 0..1000 {
        let path = if i % 50 == 0 { "/status/500" } else { "/" };
        let request = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n");
        exchange(&mut s, request.as_bytes()).await;
    }
    let dir = rouse.stop().await;
    let lines = lines(&dir.path().join("access.log"));
    let errors = lines.iter().filter(|l| l.contains("\" 500 ")).count();
    let successes = lines.iter().filter(|l| l.contains("\" 200 ")).count();
    assert_eq!(errors, 20);
    // 980 × 0.2 = 196 expected, σ ≈ 12.5: this range is more than 7σ wide each way.
    assert!((100..300).contains(&successes), "{successes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopen_under_load_loses_and_duplicates_no_line() {
    const N: usize = 4000;
    const CLIENTS: usize = 4;
    let backend = rouse_e2e::spawn_in_process("a").await;
    let rouse = Rouse::start(backend.addr(), "", 2).await;
    let done = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (done, next, addr) = (Arc::clone(&done), Arc::clone(&next), rouse.addr);
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= N {
                        return;
                    }
                    let request = format!("GET /?n={n} HTTP/1.1\r\nHost: app.test\r\n\r\n");
                    let (status, _, _) = exchange(&mut s, request.as_bytes()).await;
                    assert_eq!(status, 200);
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let d = Arc::clone(&done);
    rouse_e2e::wait_until("a quarter of the requests", WAIT, || {
        let n = d.load(Ordering::SeqCst);
        async move { n >= N / 4 }
    })
    .await;
    let rotated = rouse.dir.path().join("access.log.1");
    std::fs::rename(rouse.file(), &rotated).unwrap();
    rouse.signal(Signal::SIGUSR1);
    let file = rouse.file();
    rouse_e2e::wait_until("the file reopened", WAIT, || {
        let exists = file.exists();
        async move { exists }
    })
    .await;
    let at_reopen = done.load(Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let dir = rouse.stop().await;
    let old = lines(&dir.path().join("access.log.1"));
    let new = lines(&dir.path().join("access.log"));
    eprintln!(
        "{} lines before the reopen, {} after; {at_reopen} answered when the new file appeared",
        old.len(),
        new.len()
    );
    assert!(!old.is_empty());
    if at_reopen < N {
        assert!(!new.is_empty());
    }
    let mut seen = vec![0u32; N];
    for line in old.iter().chain(&new) {
        let n: usize = line
            .split_once("\"GET /?n=")
            .and_then(|(_, rest)| rest.split_once(' '))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("not a request's line: {line}"));
        seen[n] += 1;
    }
    let wrong: Vec<(usize, u32)> = seen
        .iter()
        .enumerate()
        .filter(|(_, c)| **c != 1)
        .map(|(n, c)| (n, *c))
        .collect();
    assert!(wrong.is_empty(), "lines not there exactly once: {wrong:?}");
    assert_eq!(old.len() + new.len(), N);
}

/// GETs `path` through rouse (python's http.server answers 404), then waits until the
/// child's line for it is in `log`.
async fn get_logged(addr: SocketAddr, path: &str, log: &Path) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let (head, _) = one_shot(addr, request.as_bytes()).await;
    assert!(head.starts_with("http/1.1 404"), "{head}");
    let line = format!("GET {path} ");
    rouse_e2e::wait_until(&format!("the child's line for {path}"), WAIT, || {
        let found = std::fs::read_to_string(log).is_ok_and(|text| text.contains(&line));
        async move { found }
    })
    .await;
}

/// logrotate renames every `*.log` of rouse's log directory, the embedded children's
/// (`child_log_dir`) with the access log: one SIGUSR1 reopens them all, and a child's output
/// goes on in its new file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_embedded_children_s_log_files_too() {
    let dir = tempfile::tempdir().unwrap();
    let [addr, app] = free_addrs::<2>();
    let children = dir.path().join("children");
    // python3's http.server logs each request it answers on stderr, line-buffered.
    let config = format!(
        "[proxy]\nlisten = [\"{addr}\"]\nshutdown_timeout = \"5s\"\n\
         [log]\naccess_log = \"{}\"\nchild_log_dir = \"{}\"\n\
         [[upstream]]\nname = \"app\"\n\
         [[upstream.server]]\naddress = \"{app}\"\n\
         command = [\"python3\", \"-m\", \"http.server\", \"--bind\", \"127.0.0.1\", \"{}\"]\n",
        dir.path().join("access.log").display(),
        children.display(),
        app.port()
    );
    let rouse = Rouse::run(dir, addr, &config).await;
    // The program's name is the upstream's and the server's index.
    let (log, rotated) = (children.join("app0.log"), children.join("app0.log.1"));
    // The first request wakes the server; its line is in the child's file.
    get_logged(addr, "/before", &log).await;
    std::fs::rename(&log, &rotated).unwrap();
    rouse.signal(Signal::SIGUSR1);
    rouse_e2e::wait_until("the child's file reopened", WAIT, || {
        let exists = log.exists();
        async move { exists }
    })
    .await;
    get_logged(addr, "/after", &log).await;
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        old.contains("GET /before") && !old.contains("GET /after"),
        "{old}"
    );
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap()
            .contains("GET /before")
    );
    let stderr = rouse.stderr();
    rouse.stop().await;
    assert!(!stderr.contains("cannot reopen"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_are_logged_as_http_2_0() {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;

    let backend = rouse_e2e::spawn_in_process("a").await;
    let rouse = Rouse::start(backend.addr(), "access_log_format = \"json\"", 1).await;
    let mut send = h2c(rouse.addr).await;
    let req = hyper::Request::post("http://app.test:81/echo?h=2")
        .header("user-agent", "h2-client")
        .header("referer", "http://ref.test/")
        .body(Full::new(Bytes::from_static(b"0123456789")))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"0123456789");

    let lines = wait_lines(&rouse.file(), 1).await;
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["protocol"], "HTTP/2.0");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["target"], "/echo?h=2");
    assert_eq!(v["host"], "app.test:81");
    assert_eq!(v["bytes_received"], 10);
    assert_eq!(v["user_agent"], "h2-client");
    assert_eq!(v["referer"], "http://ref.test/");
    assert!(is_request_id(v["request_id"].as_str().unwrap()), "{v}");
}

/// A streamed answer's line is written at its end, as nginx's: `bytes_sent` counts the body
/// that went out (a chunked one too, its framing not counted) and `ms` runs to the last byte,
/// while `upstream_ms` stops at the response head. On both paths: the HTTP/1.1 fast path and
/// hyper's (h2c).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_is_logged_at_its_end_with_its_bytes() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;

    // Three lines, the 2nd and 3rd 200 ms apart, chunked: 21 bytes over at least 400 ms.
    const LINES: &[u8] = b"line 1\nline 2\nline 3\n";
    let backend = rouse_e2e::spawn_in_process("a").await;
    let rouse = Rouse::start(backend.addr(), "access_log_format = \"json\"", 1).await;

    let (head, chunked) = one_shot(
        rouse.addr,
        b"GET /drip/3?ms=200 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(
        chunked.len() > LINES.len(),
        "the chunk framing went out too"
    );

    let mut send = h2c(rouse.addr).await;
    let req = hyper::Request::get("http://app.test/drip/3?ms=200")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let body = tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], LINES);

    let lines = wait_lines(&rouse.file(), 2).await;
    for (line, protocol) in lines.iter().zip(["HTTP/1.1", "HTTP/2.0"]) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["protocol"], protocol, "{v}");
        assert_eq!(v["bytes_sent"], LINES.len(), "{v}");
        let (ms, upstream_ms) = (
            v["ms"].as_f64().unwrap(),
            v["upstream_ms"].as_f64().unwrap(),
        );
        assert!(ms >= 400.0, "ms stops before the last byte: {v}");
        assert!(
            ms - upstream_ms >= 300.0,
            "upstream_ms is not to the head: {v}"
        );
    }
}
