//! Request body limits, request buffering and response buffering, through a real rouse, real
//! backend processes (`rouse-test-backend`, `--workers N` for gunicorn-like sync workers) and
//! real clients (reqwest, raw TCP where the bytes on the wire matter).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{
    WAIT, backend_pids, backend_server, client, config_with, embedded_upstream, free_addrs,
    start_rouse, state, static_upstream, url,
};
use futures_util::StreamExt;
use rouse::Rouse;
use rouse_e2e::{BackendProcess, Stats, backend_bin, pattern, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

const KIB: usize = 1024;
const MIB: u64 = 1 << 20;

async fn backend(id: &str) -> BackendProcess {
    BackendProcess::builder(id)
        .bin(backend_bin!())
        .spawn()
        .await
}

async fn stats(b: &BackendProcess) -> Stats {
    rouse_e2e::stats(b.addr()).await
}

/// Waits until the backend has nothing in flight, and returns its stats then.
async fn settled(b: &BackendProcess) -> Stats {
    wait_until("the backend has nothing in flight", WAIT, || async {
        let s = stats(b).await;
        (s.in_flight == 0).then_some(s)
    })
    .await
}

/// A response read off a raw connection: status, head, and the body its Content-Length says.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads one response with a Content-Length (rouse's own answers and the backend's JSON have
/// one) from `s`, within `WAIT`.
async fn read_response(s: &mut TcpStream) -> Raw {
    timeout(WAIT, async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * KIB];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk).await.expect("read a response head");
            assert!(n > 0, "connection closed before a response head: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {head:?}"));
        let mut raw = Raw {
            status,
            head,
            body: buf[end..].to_vec(),
        };
        let len: usize = raw
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no content-length in {:?}", raw.head));
        while raw.body.len() < len {
            let n = s.read(&mut chunk).await.expect("read a response body");
            assert!(n > 0, "connection closed mid-body");
            raw.body.extend_from_slice(&chunk[..n]);
        }
        raw
    })
    .await
    .expect("a response within WAIT")
}

/// Sends `head` (and `body`) on a new connection to rouse and reads the answer.
async fn exchange(rouse: SocketAddr, head: &str, body: &[u8]) -> Raw {
    let mut s = TcpStream::connect(rouse).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    // A refusal may come before the body is all written; what matters is the answer.
    let _ = s.write_all(body).await;
    read_response(&mut s).await
}

fn post_head(path: &str, len: usize, extra: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: app\r\nContent-Length: {len}\r\n{extra}\r\n")
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

fn assert_too_large(r: &Raw) {
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.header("x-rouse-error"), Some("too-large"), "{r:?}");
}

// === max_request_body ===

/// A Content-Length over the limit is answered 413 before anything is read or sent on: with
/// the body on its way, with `Expect: 100-continue` (no `100` first), and from a real client
/// that sends it all; the backend sees none of them. A body of exactly the limit goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_gets_413_and_reaches_no_server() {
    let b = backend("b").await;
    let rouse = start_rouse(&static_upstream(
        "app",
        &[],
        "max_request_body = \"1KiB\"",
        &[b.addr()],
    ))
    .await;

    let r = exchange(rouse.addr(), &post_head("/count", 1025, ""), &[7; 1025]).await;
    assert_too_large(&r);

    let head = post_head("/count", 5000, "Expect: 100-continue\r\n");
    let r = exchange(rouse.addr(), &head, &[]).await;
    assert_too_large(&r);

    let c = client();
    let resp = c
        .post(url(rouse.addr(), "/count"))
        .body(vec![1u8; 200 * KIB])
        .send()
        .await
        .expect("a real client sees the answer, not a reset");
    assert_eq!(resp.status(), 413);

    let resp = c
        .post(url(rouse.addr(), "/count"))
        .body(pattern::pattern(0, KIB).to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "exactly the limit is allowed");

    let s = settled(&b).await;
    assert_eq!(
        s.requests, 1,
        "only the body within the limit reached the backend"
    );
    assert_eq!(s.max_body_bytes, KIB as u64);
}

/// A too-large request for a cold upstream is refused without waking it: 413 at once, no
/// request held, no server started, no process spawned. So is a chunked body that passes the
/// limit, which (buffered) is read before anything is woken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_large_request_does_not_wake_a_cold_upstream() {
    let [addr] = free_addrs::<1>();
    let toml = embedded_upstream(
        "app",
        &[],
        "max_request_body = \"1KiB\"",
        &[backend_server(addr, "cold", &[], "")],
    );
    let rouse = start_rouse(&toml).await;
    assert_eq!(state(&rouse, 0, 0), "stopped");

    let t0 = Instant::now();
    let r = exchange(rouse.addr(), &post_head("/count", 4096, ""), &[]).await;
    assert_too_large(&r);
    assert!(t0.elapsed() < Duration::from_secs(2), "answered at once");

    let mut body =
        b"POST /count HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    body.extend(chunk(&[5; 800]));
    body.extend(chunk(&[6; 800]));
    let r = exchange(rouse.addr(), "", &body).await;
    assert_too_large(&r);

    // Nothing may start afterwards either: a start is asked within milliseconds of a held
    // request, so a quiet half second with every sign still at zero says none was.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        assert_eq!(state(&rouse, 0, 0), "stopped");
        assert_eq!(rouse.table().upstreams[0].held(), 0);
        assert!(backend_pids(addr).is_empty(), "no backend process");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rouse.shutdown().await;
}

/// A chunked upload (no Content-Length) that passes the limit gets 413, buffered or not; the
/// backend never gets more than the limit: nothing at all when buffered, the body up to the
/// limit at most when streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_passing_the_limit_is_cut_there() {
    for buffering in [true, false] {
        let b = backend("b").await;
        let extra = format!("max_request_body = \"2KiB\"\nrequest_buffering = {buffering}");
        let rouse = start_rouse(&static_upstream("app", &[], &extra, &[b.addr()])).await;

        let mut s = TcpStream::connect(rouse.addr()).await.unwrap();
        let head = "POST /count HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n";
        s.write_all(head.as_bytes()).await.unwrap();
        for i in 0..4u8 {
            // Apart, so a streamed body reaches the backend piece by piece.
            tokio::time::sleep(Duration::from_millis(30)).await;
            if s.write_all(&chunk(&[i; 1000])).await.is_err() {
                break;
            }
        }
        let r = read_response(&mut s).await;
        assert_too_large(&r);

        let st = settled(&b).await;
        if buffering {
            assert_eq!(st.requests, 0, "buffered: nothing reached the backend");
        } else {
            assert_eq!(st.requests, 1, "streamed: the request went on");
            assert!(
                st.max_body_bytes > 0 && st.max_body_bytes <= 2048,
                "the backend got {} bytes: never past the limit",
                st.max_body_bytes
            );
        }
        rouse.shutdown().await;
    }
}

// === request buffering ===

/// A POST that sends its 1000-byte body in ten pieces, `every` apart. Reports once its head
/// and first piece are out, then returns the status and `bytes` of the backend's answer.
async fn trickle(
    rouse: SocketAddr,
    every: Duration,
    started: tokio::sync::mpsc::Sender<()>,
) -> (u16, u64) {
    let mut s = TcpStream::connect(rouse).await.unwrap();
    s.write_all(post_head("/count", 1000, "").as_bytes())
        .await
        .unwrap();
    s.write_all(&[b'x'; 100]).await.unwrap();
    let _ = started.send(()).await;
    for _ in 1..10 {
        tokio::time::sleep(every).await;
        s.write_all(&[b'x'; 100]).await.unwrap();
    }
    let r = read_response(&mut s).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    (r.status, v["bytes"].as_u64().unwrap_or(0))
}

struct Trickled {
    /// How long each quick `GET /` took while the uploads trickled.
    quick: Vec<Duration>,
    /// The backend's stats when the quick requests were done, and at the end.
    during: Stats,
    after: Stats,
}

/// 40 clients trickle uploads for about 4.5 s through rouse to a backend with 4 sync workers
/// (rouse's `max_conns = 4` for it, as one would configure for gunicorn `-w 4`); meanwhile
/// another client sends quick `GET /`s, `quick` of them, one after the other.
async fn trickling_uploads(buffering: bool, quick: usize) -> Trickled {
    const UPLOADS: usize = 40;
    let b = BackendProcess::builder("sync")
        .bin(backend_bin!())
        .workers(4)
        .spawn()
        .await;
    let toml = format!(
        "[[upstream]]\nname = \"app\"\nsupervisor = \"none\"\nrequest_buffering = {buffering}\n\
         [[upstream.server]]\naddress = \"{}\"\nmax_conns = 4\n",
        b.addr()
    );
    let rouse = start_rouse(&toml).await;
    let (started_tx, mut started) = tokio::sync::mpsc::channel(UPLOADS);
    let uploads: Vec<_> = (0..UPLOADS)
        .map(|_| {
            tokio::spawn(trickle(
                rouse.addr(),
                Duration::from_millis(500),
                started_tx.clone(),
            ))
        })
        .collect();
    for _ in 0..UPLOADS {
        timeout(WAIT, started.recv())
            .await
            .expect("every upload starts")
            .expect("an upload task reports");
    }
    if buffering {
        assert_eq!(
            stats(&b).await.requests,
            0,
            "buffered: no upload reaches the backend before its body is complete"
        );
    } else {
        wait_until("four uploads hold the four workers", WAIT, || async {
            stats(&b).await.busy == 4
        })
        .await;
    }

    let c = client();
    let mut took = Vec::new();
    for _ in 0..quick {
        let t0 = Instant::now();
        let r = c.get(url(rouse.addr(), "/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        took.push(t0.elapsed());
    }
    let during = stats(&b).await;
    for u in uploads {
        let (status, bytes) = timeout(WAIT, u).await.expect("an upload ends").unwrap();
        assert_eq!((status, bytes), (200, 1000), "every upload arrives whole");
    }
    let after = settled(&b).await;
    rouse.shutdown().await;
    Trickled {
        quick: took,
        during,
        after,
    }
}

/// With request buffering (the default), trickling uploads hold no worker: quick requests from
/// other clients are served at once all through, each worker reads a complete body at network
/// speed, and the backend never has more than its 4 requests at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_uploads_do_not_starve_sync_workers_when_buffered() {
    let t = trickling_uploads(true, 10).await;
    let slowest = t.quick.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(1),
        "quick requests served promptly during the trickle: {:?}",
        t.quick
    );
    assert!(
        t.during.max_body_read_us < 1_000_000,
        "no worker waited on an upload: {:?}",
        t.during
    );
    assert!(
        t.after.max_body_read_us < 1_000_000,
        "each body reached a worker complete: {:?}",
        t.after
    );
    assert!(
        t.after.max_busy <= 4 && t.after.max_in_flight <= 4,
        "{:?}",
        t.after
    );
    assert_eq!(t.after.requests, 40 + 10);
}

/// The same without request buffering: the uploads hold the workers while they trickle, and
/// a quick request waits for one of them to finish. This is what the test above guards
/// against, shown so that a regression cannot pass unnoticed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_uploads_starve_sync_workers_without_buffering() {
    let t = trickling_uploads(false, 1).await;
    assert!(
        t.quick[0] > Duration::from_millis(2500),
        "the quick request waited for a trickling upload: {:?}",
        t.quick
    );
    assert!(
        t.after.max_body_read_us > 2_500_000,
        "workers waited on uploads: {:?}",
        t.after
    );
}

/// The deleted temp files rouse has open in `dir` (its buffers past their memory part).
fn open_temp_files(dir: &Path) -> usize {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// A buffered body beyond `request_buffer_size` goes to an unlinked temp file in `temp_dir`
/// while it arrives, reaches the backend intact (length and checksum), and the file is gone
/// once the request is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_past_the_memory_buffer_goes_through_a_temp_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().canonicalize().unwrap();
    let b = backend("b").await;
    let proxy = format!(
        "connect_timeout = \"1s\"\nread_timeout = \"5s\"\ntemp_dir = {:?}",
        dir_path.display().to_string()
    );
    let upstream = static_upstream("app", &[], "request_buffer_size = \"4KiB\"", &[b.addr()]);
    let rouse = Rouse::start(config_with(&proxy, &upstream)).await.unwrap();
    let c = client();
    let before = open_temp_files(&dir_path);

    const HALF: u64 = 320 * 1024;
    let mut s = TcpStream::connect(rouse.addr()).await.unwrap();
    let head = "POST /count HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    for off in (0..HALF).step_by(16 * KIB) {
        s.write_all(&chunk(&pattern::pattern(off, 16 * KIB)))
            .await
            .unwrap();
    }
    wait_until("the body spills to a temp file", WAIT, || async {
        open_temp_files(&dir_path) > before
    })
    .await;
    assert_eq!(
        stats(&b).await.requests,
        0,
        "nothing sent before the body is in"
    );
    assert_eq!(
        std::fs::read_dir(&dir_path).unwrap().count(),
        0,
        "the file has no name: nothing is left behind, whatever happens to rouse"
    );
    for off in (HALF..2 * HALF).step_by(16 * KIB) {
        s.write_all(&chunk(&pattern::pattern(off, 16 * KIB)))
            .await
            .unwrap();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 200, "{r:?}");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["bytes"], 2 * HALF);
    assert_eq!(
        v["checksum"],
        pattern::checksum(2 * HALF),
        "in order, intact"
    );

    // The same through a real client that sends a length.
    let len = 2 * MIB;
    let resp = c
        .post(url(rouse.addr(), "/count"))
        .body(pattern::pattern(0, len as usize).to_vec())
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["bytes"], len);
    assert_eq!(v["checksum"], pattern::checksum(len));

    wait_until("the temp files are closed", WAIT, || async {
        open_temp_files(&dir_path) == before
    })
    .await;
    rouse.shutdown().await;
}

// === response buffering ===

/// A 64 MiB response, far more than the sockets between can hold, to a client that reads
/// only its head: with response buffering the backend finishes and rouse's in-flight count
/// for it drops to 0 while the client has read nothing of the body; the client then gets
/// every byte, in order. Without buffering the server is held for as long as the client
/// does not read (shown for contrast, bounded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_does_not_hold_the_server_when_responses_are_buffered() {
    const LEN: u64 = 64 * MIB;
    for buffering in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let b = backend("b").await;
        let proxy = format!(
            "connect_timeout = \"1s\"\nread_timeout = \"5s\"\ntemp_dir = {:?}",
            dir.path().display().to_string()
        );
        let extra = format!("response_buffering = {buffering}\nresponse_buffer_size = \"64KiB\"");
        let upstream = static_upstream("app", &[], &extra, &[b.addr()]);
        let rouse = Rouse::start(config_with(&proxy, &upstream)).await.unwrap();
        let server_in_flight = || rouse.table().upstreams[0].servers[0].in_flight();

        let c = client();
        let resp = c
            .get(url(rouse.addr(), &format!("/bytes/{LEN}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        // The body is not read yet: the client's socket fills and stays full.
        if buffering {
            wait_until("the backend finished sending", WAIT, || async {
                let s = stats(&b).await;
                s.in_flight == 0 && s.requests == 1 && server_in_flight() == 0
            })
            .await;
        } else {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert_eq!(
                stats(&b).await.in_flight,
                1,
                "unbuffered: the server is held"
            );
            assert_eq!(server_in_flight(), 1);
        }

        let mut sum = pattern::Checksum::new();
        let mut body = resp.bytes_stream();
        while let Some(piece) = timeout(WAIT, body.next()).await.expect("the body flows") {
            sum.update(&piece.unwrap());
        }
        assert_eq!(sum.len(), LEN);
        assert_eq!(sum.finish(), pattern::checksum(LEN), "in order, intact");
        wait_until("nothing in flight", WAIT, || async {
            server_in_flight() == 0
        })
        .await;
        rouse.shutdown().await;
    }
}

/// A small response of known length passes straight (no pump), and still never waits on the
/// client: a client with a tiny receive buffer that reads nothing does not hold the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_response_to_a_reader_that_reads_nothing_does_not_hold_the_server() {
    let b = backend("b").await;
    let rouse = start_rouse(&static_upstream("app", &[], "", &[b.addr()])).await;
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&rouse.addr().into()).unwrap();
    sock.set_nonblocking(true).unwrap();
    let mut s = TcpStream::from_std(sock.into()).unwrap();
    s.write_all(b"GET /bytes/32768?length HTTP/1.1\r\nHost: app\r\n\r\n")
        .await
        .unwrap();
    wait_until("the backend finished sending", WAIT, || async {
        let st = stats(&b).await;
        st.requests == 1
            && st.in_flight == 0
            && rouse.table().upstreams[0].servers[0].in_flight() == 0
    })
    .await;
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 200);
    assert!(pattern::matches(0, &r.body) && r.body.len() == 32768);
}

/// Buffering holds nothing back: a slow chunked stream reaches the client line by line, as
/// the server sends it, not at its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_still_reaches_the_client_as_it_comes() {
    let b = backend("b").await;
    let rouse = start_rouse(&static_upstream("app", &[], "", &[b.addr()])).await;
    let t0 = Instant::now();
    let resp = client()
        .get(url(rouse.addr(), "/drip/5?ms=400"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let mut first_line_at = None;
    while let Some(piece) = timeout(WAIT, body.next()).await.expect("the stream flows") {
        text.push_str(&String::from_utf8_lossy(&piece.unwrap()));
        if first_line_at.is_none() && text.contains("line 1\n") {
            first_line_at = Some(t0.elapsed());
        }
    }
    let total = t0.elapsed();
    assert_eq!(text, "line 1\nline 2\nline 3\nline 4\nline 5\n");
    let first = first_line_at.expect("line 1 arrived");
    // The server sends the last line 1.6 s after the first.
    assert!(total >= Duration::from_millis(1600), "took {total:?}");
    assert!(
        total - first >= Duration::from_millis(1000),
        "line 1 came at {first:?}, the end at {total:?}: not held back"
    );
}
