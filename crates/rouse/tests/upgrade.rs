//! `rouse upgrade` and SIGUSR2 on the real binary: a new rouse process takes over the
//! listening sockets (and the embedded children) while clients keep sending, and nothing is
//! refused. Here rather than in rouse-e2e because the `rouse` binary is only reachable
//! (`CARGO_BIN_EXE_rouse`) from this package's tests; rouse-e2e's in-process backend serves.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

mod common;

use common::{ROUSE, WAIT, free_addrs};

/// Whether `pid` runs (a zombie does not: it only waits for its parent's `wait`).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The parent of `pid`, from /proc.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

async fn wait_gone(pid: u32, within: Duration) {
    let deadline = Instant::now() + within;
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "pid {pid} still running after {within:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// The pids whose command line contains `needle`.
fn pids_running(needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .filter(|pid| alive(*pid))
        .collect()
}

/// A `rouse run` and every process that took over from it; all killed at the end.
struct Rig {
    dir: tempfile::TempDir,
    config: PathBuf,
    first: Child,
    admin: SocketAddr,
    proxy: SocketAddr,
    /// Every rouse pid seen, oldest first.
    pids: Vec<u32>,
    /// Other processes the test must not leave behind (embedded children).
    others: Vec<u32>,
    /// Where rouse's `sd_notify` messages arrive (its `NOTIFY_SOCKET`).
    notify: std::os::unix::net::UnixDatagram,
}

impl Rig {
    /// Writes the config (`{proxy}` and `{admin}` replaced) and starts rouse on it.
    async fn start(body: &str) -> Rig {
        let [proxy, admin] = free_addrs();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("rouse.toml");
        std::fs::write(&config, Rig::text(body, proxy, admin)).unwrap();
        let log = std::fs::File::create(dir.path().join("rouse.log")).unwrap();
        let notify_path = dir.path().join("notify");
        let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
        let first = Command::new(ROUSE)
            .arg("run")
            .arg("-c")
            .arg(&config)
            // Its own state directory: the test's children are nobody else's business.
            .env("XDG_RUNTIME_DIR", dir.path())
            .env("NOTIFY_SOCKET", &notify_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut rig = Rig {
            pids: vec![first.id()],
            dir,
            config,
            first,
            admin,
            proxy,
            others: Vec::new(),
            notify,
        };
        let pid = rig.pids[0];
        rig.wait_for_pid(pid).await;
        rig
    }

    fn text(body: &str, proxy: SocketAddr, admin: SocketAddr) -> String {
        body.replace("{proxy}", &proxy.to_string())
            .replace("{admin}", &admin.to_string())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rouse.log")).unwrap_or_default()
    }

    fn current(&self) -> u32 {
        *self.pids.last().unwrap()
    }

    /// The pid the admin API's /status says, if it answers.
    async fn status_pid(&self) -> Option<u32> {
        let (code, body) =
            rouse::client::request(&self.admin.to_string(), hyper::Method::GET, "/status", None)
                .await
                .ok()?;
        if !code.is_success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        u32::try_from(v.get("pid")?.as_u64()?).ok()
    }

    async fn wait_for_pid(&mut self, pid: u32) {
        let deadline = Instant::now() + WAIT;
        while self.status_pid().await != Some(pid) {
            assert!(
                Instant::now() < deadline,
                "rouse pid {pid} never answered /status; log:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// `rouse ARGS --admin ADDR`: exit code, stdout, stderr.
    async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new(ROUSE);
        cmd.args(args).arg("--admin").arg(self.admin.to_string());
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `rouse upgrade`; the new pid, from its answer.
    async fn upgrade_cli(&mut self) -> u32 {
        let (code, out, err) = self.cli(&["upgrade"]).await;
        assert_eq!(code, 0, "rouse upgrade: {out}{err}\nlog:\n{}", self.log());
        let pid = pid_in(&out).unwrap_or_else(|| panic!("no pid in {out:?}"));
        self.took_over(pid).await
    }

    /// `kill -USR2`; the new pid, from /status.
    async fn upgrade_signal(&mut self) -> u32 {
        let old = self.current();
        kill(Pid::from_raw(old as i32), Signal::SIGUSR2).unwrap();
        let deadline = Instant::now() + WAIT;
        let pid = loop {
            match self.status_pid().await {
                Some(pid) if pid != old => break pid,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "no new rouse after SIGUSR2; log:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(20)).await;
        };
        self.took_over(pid).await
    }

    async fn took_over(&mut self, pid: u32) -> u32 {
        assert!(!self.pids.contains(&pid), "pid {pid} again");
        self.pids.push(pid);
        self.wait_for_pid(pid).await;
        pid
    }

    /// The next `sd_notify` message, waiting at most [`WAIT`].
    fn notified(&self) -> String {
        self.notify.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 256];
        let n = self.notify.recv(&mut buf).expect("an sd_notify message");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn rewrite(&self, body: &str) {
        std::fs::write(&self.config, Rig::text(body, self.proxy, self.admin)).unwrap();
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // The newest one stops gracefully (and stops its children); anything left is killed.
        let newest = self.current();
        let _ = kill(Pid::from_raw(newest as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(newest) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in self.pids.iter().chain(&self.others) {
            if alive(*pid) {
                let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
            }
        }
        let _ = self.first.kill();
        let _ = self.first.wait();
    }
}

/// "… rouse pid 123 serves …" → 123.
fn pid_in(text: &str) -> Option<u32> {
    let rest = &text[text.find("pid ")? + 4..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    /// Keep-alive requests sent again on a new connection because the old process closed
    /// the idle one they went out on (RFC 9112 §9.3.1: as browsers and curl do for GETs).
    retried: AtomicU64,
}

/// A GET on a new connection every time; `Err` says what went wrong.
async fn get_once(addr: SocketAddr) -> Result<(), (bool, String)> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| {
        (
            e.kind() == std::io::ErrorKind::ConnectionRefused,
            e.to_string(),
        )
    })?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| (false, e.to_string()))?;
    let mut answer = Vec::new();
    timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
        .await
        .map_err(|_| (false, "no answer in 10 s".to_owned()))?
        .map_err(|e| (false, e.to_string()))?;
    // python3 -m http.server answers HTTP/1.0, which rouse passes on.
    if answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200") {
        Ok(())
    } else {
        Err((false, String::from_utf8_lossy(&answer).into_owned()))
    }
}

async fn new_connections(addr: SocketAddr, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match get_once(addr).await {
            Ok(()) => tally.ok.fetch_add(1, Ordering::SeqCst),
            Err((true, e)) => {
                eprintln!("refused: {e}");
                tally.refused.fetch_add(1, Ordering::SeqCst)
            }
            Err((false, e)) => {
                eprintln!("failed: {e}");
                tally.failed.fetch_add(1, Ordering::SeqCst)
            }
        };
        sleep(Duration::from_millis(5)).await;
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect_keep_alive(addr: SocketAddr) -> Result<Sender, String> {
    let s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn get_on(sender: &mut Sender) -> Result<(), hyper::Error> {
    sender.ready().await?;
    let req = hyper::Request::get("/")
        .header("host", "test")
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    assert_eq!(status, 200, "keep-alive GET");
    Ok(())
}

/// One connection for as long as the server keeps it; a new one when it closes it.
async fn keep_alive(addr: SocketAddr, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut sender: Option<Sender> = None;
    while !stop.load(Ordering::SeqCst) {
        if sender.as_ref().is_none_or(Sender::is_closed) {
            match connect_keep_alive(addr).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    eprintln!("keep-alive connect: {e}");
                    tally.refused.fetch_add(1, Ordering::SeqCst);
                    sleep(Duration::from_millis(5)).await;
                    continue;
                }
            }
        }
        let s = sender.as_mut().unwrap();
        match get_on(s).await {
            Ok(()) => {
                tally.ok.fetch_add(1, Ordering::SeqCst);
            }
            // The server closed the idle connection as the request went out: once more, on a
            // new connection.
            Err(e) if e.is_incomplete_message() || e.is_canceled() || e.is_closed() => {
                tally.retried.fetch_add(1, Ordering::SeqCst);
                let again = match connect_keep_alive(addr).await {
                    Ok(mut fresh) => {
                        let r = get_on(&mut fresh).await.map_err(|e| e.to_string());
                        sender = Some(fresh);
                        r
                    }
                    Err(e) => Err(e),
                };
                match again {
                    Ok(()) => tally.ok.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        eprintln!("keep-alive retry failed: {e}");
                        tally.failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
            Err(e) => {
                eprintln!("keep-alive failed: {e}");
                tally.failed.fetch_add(1, Ordering::SeqCst);
                sender = None;
            }
        }
        sleep(Duration::from_millis(5)).await;
    }
}

const STATIC: &str = r#"
[proxy]
listen = ["{proxy}"]
shutdown_timeout = "30s"
[admin]
listen = "{admin}"
[[upstream]]
name = "app"
supervisor = "none"
[[upstream.server]]
address = "BACKEND"
"#;

async fn static_rig() -> (Rig, rouse_e2e::InProcessBackend) {
    let backend = rouse_e2e::spawn_in_process("a").await;
    let rig = Rig::start(&STATIC.replace("BACKEND", &backend.addr().to_string())).await;
    (rig, backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_upgrades_under_load_refuse_nothing() {
    let (mut rig, _backend) = static_rig().await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(tokio::spawn(new_connections(
            rig.proxy,
            Arc::clone(&tally),
            Arc::clone(&stop),
        )));
    }
    clients.push(tokio::spawn(keep_alive(
        rig.proxy,
        Arc::clone(&tally),
        Arc::clone(&stop),
    )));
    for round in 0..5 {
        let before = tally.ok.load(Ordering::SeqCst);
        let old = rig.current();
        let new = if round % 2 == 0 {
            rig.upgrade_cli().await
        } else {
            rig.upgrade_signal().await
        };
        assert_ne!(new, old);
        // No WebSocket holds it: the old one drains at once and exits.
        wait_gone(old, WAIT).await;
        // The clients go on through the new one.
        let deadline = Instant::now() + WAIT;
        while tally.ok.load(Ordering::SeqCst) < before + 20 {
            assert!(
                Instant::now() < deadline,
                "no progress after upgrade {round}"
            );
            sleep(Duration::from_millis(10)).await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, refused, failed, retried) = (
        tally.ok.load(Ordering::SeqCst),
        tally.refused.load(Ordering::SeqCst),
        tally.failed.load(Ordering::SeqCst),
        tally.retried.load(Ordering::SeqCst),
    );
    eprintln!("ok {ok}, refused {refused}, failed {failed}, keep-alive retried {retried}");
    assert_eq!((refused, failed), (0, 0), "log:\n{}", rig.log());
    assert!(ok > 100, "{ok}");
    assert_eq!(rig.pids.len(), 6);
    for old in &rig.pids[..5] {
        assert!(!alive(*old), "old rouse {old} still runs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_stays_on_the_old_process_until_it_closes() {
    let (mut rig, _backend) = static_rig().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", rig.proxy))
        .await
        .unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

    let old = rig.current();
    let new = rig.upgrade_cli().await;
    // The old process keeps the WebSocket, which keeps working; new requests go to the new.
    for i in 0..3 {
        ws.send(Message::text(format!("after {i}"))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("after {i}"))
        );
    }
    get_once(rig.proxy).await.unwrap();
    assert_eq!(rig.status_pid().await, Some(new));
    sleep(Duration::from_millis(300)).await;
    assert!(alive(old), "the old rouse left before its WebSocket closed");

    ws.close(None).await.unwrap();
    // Closed: the old process exits now, not at its 30 s shutdown_timeout.
    let closed = Instant::now();
    wait_gone(old, Duration::from_secs(10)).await;
    eprintln!("old rouse gone {:?} after the close", closed.elapsed());
    get_once(rig.proxy).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_upgrade_exits_2_and_the_old_one_keeps_serving() {
    let (rig, backend) = static_rig().await;
    let old = rig.current();
    let good = STATIC.replace("BACKEND", &backend.addr().to_string());
    rig.rewrite(&format!("{good}bogus = 1\n"));
    let (code, out, err) = rig.cli(&["upgrade"]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("unknown key"), "{err}");
    assert!(err.contains("keeps serving"), "{err}");
    let failed = pid_in(&err[err.find("new rouse").unwrap()..]).unwrap();
    wait_gone(failed, WAIT).await;

    get_once(rig.proxy).await.unwrap();
    assert_eq!(rig.status_pid().await, Some(old));
    assert!(alive(old));
    // And once the file is fixed, the upgrade goes through.
    rig.rewrite(&good);
    let mut rig = rig;
    let new = rig.upgrade_cli().await;
    assert_ne!(new, old);
    wait_gone(old, WAIT).await;
    get_once(rig.proxy).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_backend_keeps_its_pid_across_upgrades() {
    let [backend] = free_addrs();
    let port = backend.port().to_string();
    let body = format!(
        r#"
[proxy]
listen = ["{{proxy}}"]
[admin]
listen = "{{admin}}"
[[upstream]]
name = "files"
min_servers = 0
ready = "tcp"
start_timeout = "15s"
[[upstream.server]]
address = "{backend}"
command = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
"#
    );
    let mut rig = Rig::start(&body).await;
    let needle = format!("http.server --bind 127.0.0.1 {port}");
    get_once(rig.proxy).await.unwrap();
    let children = pids_running(&needle);
    assert_eq!(children.len(), 1, "{children:?}");
    let child = children[0];
    rig.others.push(child);

    for round in 0..2 {
        let old = rig.current();
        if round == 0 {
            rig.upgrade_cli().await;
        } else {
            rig.upgrade_signal().await;
        }
        wait_gone(old, WAIT).await;
        // Same process, still serving, now through the new rouse.
        assert_eq!(pids_running(&needle), vec![child]);
        get_once(rig.proxy).await.unwrap();
    }
    // Its output is still read: python logs each request to stderr, which rouse logs.
    let lines = |log: &str| log.matches("\"GET / HTTP/1.1\" 200").count();
    let before = lines(&rig.log());
    get_once(rig.proxy).await.unwrap();
    rouse_e2e::wait_until("the child's log line", WAIT, || {
        let n = lines(&rig.log());
        async move { n > before }
    })
    .await;

    // The newest rouse stops the child it adopted when it stops.
    let newest = rig.current();
    kill(Pid::from_raw(newest as i32), Signal::SIGTERM).unwrap();
    wait_gone(newest, WAIT).await;
    wait_gone(child, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_change_is_applied_by_reload_through_a_new_process() {
    let (mut rig, backend) = static_rig().await;
    let [other] = free_addrs();
    let old = rig.current();
    let changed = STATIC
        .replace("BACKEND", &backend.addr().to_string())
        .replace("[\"{proxy}\"]", &format!("[\"{other}\"]"));
    rig.rewrite(&changed);
    let (code, out, err) = rig.cli(&["reload"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("took over to apply [proxy]"), "{out}");
    let new = pid_in(&out).unwrap();
    rig.took_over(new).await;
    get_once(other).await.unwrap();
    wait_gone(old, WAIT).await;
    // The old listener went with the old process.
    let refused = get_once(rig.proxy).await;
    assert!(matches!(refused, Err((true, _))), "{refused:?}");
}

/// A changed `[cluster]` goes the way of a changed `[proxy]`: a new process joins with it; a
/// build without the `cluster` feature refuses it there, and the running one serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_change_is_applied_by_reload_through_a_new_process() {
    let (mut rig, backend) = static_rig().await;
    let old = rig.current();
    // Nothing answers there: a rouse never waits for etcd to start serving.
    let [etcd] = free_addrs();
    let changed = format!(
        "{}\n[cluster]\netcd = [\"http://{etcd}\"]\nname = \"edge\"\n",
        STATIC.replace("BACKEND", &backend.addr().to_string())
    );
    rig.rewrite(&changed);
    let (code, out, err) = rig.cli(&["reload"]).await;
    if cfg!(feature = "cluster") {
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("took over to apply [cluster]"), "{out}");
        let new = pid_in(&out).unwrap();
        rig.took_over(new).await;
        wait_gone(old, WAIT).await;
    } else {
        let said = format!("{out}{err}");
        assert!(said.contains("[cluster]"), "{said}");
        assert!(
            said.contains("needs a rouse built with the `cluster` feature"),
            "{said}"
        );
        assert_eq!(rig.status_pid().await, Some(old), "{said}");
    }
    get_once(rig.proxy).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_is_told_the_new_main_pid() {
    let (mut rig, _backend) = static_rig().await;
    let first = rig.current();
    assert_eq!(rig.notified(), format!("READY=1\nMAINPID={first}\n"));
    let new = rig.upgrade_cli().await;
    assert_eq!(rig.notified(), format!("READY=1\nMAINPID={new}\n"));
    wait_gone(first, WAIT).await;
}

/// A supervisord of the test's own running `program` (not started), killed on drop.
struct Supervisord {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Supervisord {
    async fn spawn(program: &str, command: &str) -> Supervisord {
        let dir = tempfile::tempdir().unwrap();
        let [addr] = free_addrs();
        let d = dir.path().display();
        let conf = format!(
            "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\n\
             pidfile={d}/supervisord.pid\nchildlogdir={d}\n\
             [inet_http_server]\nport={addr}\n\
             [rpcinterface:supervisor]\n\
             supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\
             [program:{program}]\ncommand={command}\nautostart=false\nautorestart=false\n\
             startsecs=0\nstopasgroup=true\nkillasgroup=true\n"
        );
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
        let sd = Supervisord {
            child,
            addr,
            _dir: dir,
        };
        rouse_e2e::wait_until("supervisord to listen", WAIT, || async move {
            TcpStream::connect(addr).await.is_ok()
        })
        .await;
        sd
    }
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        // SIGTERM: supervisord stops its programs before it exits.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `what` of the events in /status.
async fn events(rig: &Rig) -> Vec<String> {
    let Ok((_, body)) =
        rouse::client::request(&rig.admin.to_string(), hyper::Method::GET, "/status", None).await
    else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    v["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| Some(e["what"].as_str()?.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisord_programs_are_adopted_not_restarted() {
    let [backend] = free_addrs();
    let port = backend.port();
    let command = format!("python3 -m http.server --bind 127.0.0.1 {port}");
    let sd = Supervisord::spawn("web", &command).await;
    let body = format!(
        r#"
[proxy]
listen = ["{{proxy}}"]
[admin]
listen = "{{admin}}"
[supervisors.main]
url = "http://{}/RPC2"
poll_interval = "200ms"
[[upstream]]
name = "web"
supervisor = "main"
min_servers = 0
ready = "tcp"
[[upstream.server]]
address = "{backend}"
program = "web"
"#,
        sd.addr
    );
    let mut rig = Rig::start(&body).await;
    get_once(rig.proxy).await.unwrap();
    let needle = format!("http.server --bind 127.0.0.1 {port}");
    let running = pids_running(&needle);
    assert_eq!(running.len(), 1, "{running:?}");

    let old = rig.current();
    rig.upgrade_cli().await;
    // The new rouse read the program's state and adopted it: no stop, no start.
    rouse_e2e::wait_until("the new rouse to adopt the program", WAIT, || async {
        events(&rig).await.iter().any(|w| w == "adopt")
    })
    .await;
    wait_gone(old, WAIT).await;
    get_once(rig.proxy).await.unwrap();
    assert_eq!(pids_running(&needle), running);
    let seen = events(&rig).await;
    assert!(
        !seen.iter().any(|w| w == "start" || w == "stop"),
        "{seen:?}"
    );
}

#[test]
fn pids_are_read_from_answers() {
    assert_eq!(
        pid_in("upgraded: rouse pid 123 serves now; pid 7 finishes"),
        Some(123)
    );
    assert_eq!(pid_in("nothing"), None);
    assert!(Path::new(ROUSE).is_file());
}

/// A child that ignores SIGTERM keeps its server `stopping` for its whole `stop_timeout`,
/// and the handover waits for that stop to end: in that window the old rouse has stopped
/// accepting, and the new one is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_dying_after_the_old_stopped_accepting_is_rolled_back() {
    let [kept, stubborn] = free_addrs();
    let body = format!(
        r#"
[proxy]
listen = ["{{proxy}}"]
[admin]
listen = "{{admin}}"
[[upstream]]
name = "files"
min_servers = 0
ready = "tcp"
[[upstream.server]]
address = "{kept}"
command = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{kept_port}"]
[[upstream]]
name = "stubborn"
hosts = ["stubborn.test"]
min_servers = 0
ready = "tcp"
[[upstream.server]]
address = "{stubborn}"
command = "trap '' TERM; exec python3 -m http.server --bind 127.0.0.1 {stubborn_port}"
stop_timeout = "8s"
"#,
        kept_port = kept.port(),
        stubborn_port = stubborn.port(),
    );
    let mut rig = Rig::start(&body).await;
    let old = rig.current();
    get_once(rig.proxy).await.unwrap();
    let child = pids_running(&format!("http.server --bind 127.0.0.1 {}", kept.port()));
    assert_eq!(child.len(), 1);
    rig.others.extend(&child);
    // Wake the stubborn one, then stop it: it stays `stopping`.
    let mut s = TcpStream::connect(rig.proxy).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: stubborn.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    // python's http.server answers HTTP/1.0; a proxy forwards with its own version (RFC 9110
    // §6.2: intermediaries that are not tunnels send their own HTTP-version), as nginx does.
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    rig.others.extend(pids_running(&format!(
        "http.server --bind 127.0.0.1 {}",
        stubborn.port()
    )));
    let (code, out, err) = rig.cli(&["stop", "stubborn", "0"]).await;
    assert_eq!(code, 0, "{out}{err}");

    let mut cmd = Command::new(ROUSE);
    cmd.arg("upgrade").arg("--admin").arg(rig.admin.to_string());
    let upgrade = tokio::task::spawn_blocking(move || cmd.output().unwrap());
    // The old one has stopped accepting once it says so; the new one waits for its children.
    rouse_e2e::wait_until("the old rouse to stop accepting", WAIT, || {
        let stopped = rig.log().contains("shutting down: no new connections");
        async move { stopped }
    })
    .await;
    // The new rouse is the old one's child.
    let new: Vec<u32> = pids_running(ROUSE)
        .into_iter()
        .filter(|p| parent(*p) == Some(old))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    kill(Pid::from_raw(new[0] as i32), Signal::SIGKILL).unwrap();

    let out = upgrade.await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("keeps serving"));
    // The old one serves again, through the same child.
    get_once(rig.proxy).await.unwrap();
    assert_eq!(rig.status_pid().await, Some(old));
    assert_eq!(
        pids_running(&format!("http.server --bind 127.0.0.1 {}", kept.port())),
        child
    );
    assert!(
        rig.log().contains("this rouse serves again"),
        "{}",
        rig.log()
    );
}
