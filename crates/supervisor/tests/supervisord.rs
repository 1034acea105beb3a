//! The supervisord driver against real supervisord processes (Debian's `supervisor` package,
//! which scripts/test.sh installs), each on a free loopback port or a unix socket in a
//! temporary directory.

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rouse_config::{SupervisordConfig, SupervisordUrl};
use rouse_supervisor::{ProcessInfo, ProcessState, Supervisor, SupervisorError, Supervisord};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::broadcast;
use tokio::time::{Instant, sleep, timeout};

// ---------------------------------------------------------------------------------------------
// Harness

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[derive(Default)]
struct Options {
    unix: bool,
    auth: Option<(&'static str, &'static str)>,
    /// Extra `[program:...]`/`[group:...]` sections; `{dir}` is the temporary directory.
    extra: String,
}

/// A supervisord of our own, stopped (with its children) on drop.
struct Sd {
    dir: TempDir,
    conf: PathBuf,
    child: Option<Child>,
    url: SupervisordUrl,
    auth: Option<(&'static str, &'static str)>,
    /// The port app0 listens on.
    app_port: u16,
}

impl Sd {
    async fn start(options: Options) -> Sd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let app_port = free_port();
        let (url, server, ctl_url) = if options.unix {
            let sock = dir.path().join("s.sock");
            (
                SupervisordUrl::Unix { path: sock.clone() },
                format!("[unix_http_server]\nfile={}\n", sock.display()),
                format!("unix://{}", sock.display()),
            )
        } else {
            let port = free_port();
            (
                SupervisordUrl::Http {
                    host: "127.0.0.1".to_owned(),
                    port,
                    path: "/RPC2".to_owned(),
                },
                format!("[inet_http_server]\nport=127.0.0.1:{port}\n"),
                format!("http://127.0.0.1:{port}"),
            )
        };
        let mut conf = format!(
            "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\n\
             pidfile={d}/supervisord.pid\nchildlogdir={d}\n\n\
             [rpcinterface:supervisor]\n\
             supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
             {server}"
        );
        let mut ctl = format!("[supervisorctl]\nserverurl={ctl_url}\n");
        if let Some((user, password)) = options.auth {
            let creds = format!("username={user}\npassword={password}\n");
            conf.push_str(&creds);
            ctl.push_str(&creds);
        }
        let _ = write!(
            conf,
            "\n{ctl}\n\
             [program:app0]\ncommand=python3 -m http.server --bind 127.0.0.1 {app_port}\n\
             directory={d}\nautostart=false\nautorestart=false\nstartsecs=1\nstopwaitsecs=3\n\n\
             [program:a]\ncommand=sleep 1000\nautostart=false\nstartsecs=0\nstopwaitsecs=1\n\n\
             [program:b]\ncommand=sleep 1000\nautostart=false\nstartsecs=0\nstopwaitsecs=1\n\n\
             [group:g]\nprograms=a,b\n\n{}",
            options.extra.replace("{dir}", &d.to_string())
        );
        let conf_path = dir.path().join("supervisord.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut sd = Sd {
            dir,
            conf: conf_path,
            child: None,
            url,
            auth: options.auth,
            app_port,
        };
        sd.spawn().await;
        sd
    }

    /// Runs supervisord (again, on the same port or socket) and waits until it answers.
    async fn spawn(&mut self) {
        let child = Command::new("supervisord")
            .arg("-c")
            .arg(&self.conf)
            .arg("-n")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("supervisord is installed (apt-get install supervisor)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Ok(true)) = timeout(Duration::from_secs(2), self.raw_get_state()).await {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "supervisord exited ({status}): {}",
                    std::fs::read_to_string(self.dir.path().join("supervisord.log"))
                        .unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "supervisord did not answer in 20s"
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// getState over a bare HTTP/1.0 exchange, independent of the code under test.
    async fn raw_get_state(&self) -> std::io::Result<bool> {
        let body = "<?xml version=\"1.0\"?><methodCall><methodName>supervisor.getState\
                    </methodName><params></params></methodCall>";
        let mut request = format!(
            "POST /RPC2 HTTP/1.0\r\nHost: localhost\r\nContent-Type: text/xml\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        if let Some((u, p)) = self.auth {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            let _ = write!(request, "Authorization: Basic {token}\r\n");
        }
        request.push_str("\r\n");
        request.push_str(body);
        let mut answer = String::new();
        match &self.url {
            SupervisordUrl::Http { port, .. } => {
                let mut s = TcpStream::connect(("127.0.0.1", *port)).await?;
                s.write_all(request.as_bytes()).await?;
                s.read_to_string(&mut answer).await?;
            }
            SupervisordUrl::Unix { path } => {
                let mut s = UnixStream::connect(path).await?;
                s.write_all(request.as_bytes()).await?;
                s.read_to_string(&mut answer).await?;
            }
        }
        Ok(answer.contains("<string>RUNNING</string>"))
    }

    /// SIGKILL: supervisord vanishes and leaves its children behind.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn config(&self, poll: Duration) -> SupervisordConfig {
        SupervisordConfig {
            name: "main".to_owned(),
            url: self.url.clone(),
            username: self.auth.map(|a| a.0.to_owned()),
            password: self.auth.map(|a| a.1.to_owned()),
            tls: None,
            poll_interval: poll,
            timeout: Duration::from_secs(5),
        }
    }

    fn driver(&self, programs: &[&str]) -> Arc<Supervisord> {
        Supervisord::new(
            &self.config(Duration::from_millis(200)),
            programs.iter().map(|p| p.to_string()).collect(),
        )
    }

    async fn supervisorctl(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::new("supervisorctl")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Sd {
    fn drop(&mut self) {
        // SIGTERM: supervisord stops its children (stopwaitsecs at most 3 s here) and exits.
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        for _ in 0..300 {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

async fn info(sup: &Supervisord, program: &str) -> ProcessInfo {
    common::info(sup, program).await
}

async fn wait_state(
    sup: &Supervisord,
    program: &str,
    state: ProcessState,
    within: Duration,
) -> ProcessInfo {
    common::wait_state_every(sup, program, state, within, Duration::from_millis(50)).await
}

/// The first event about `program` that `want` accepts (earlier ones are skipped).
async fn event(
    rx: &mut broadcast::Receiver<ProcessInfo>,
    program: &str,
    want: impl Fn(&ProcessInfo) -> bool,
    within: Duration,
) -> ProcessInfo {
    timeout(within, async {
        loop {
            let i = rx.recv().await.expect("event channel");
            if i.program == program && want(&i) {
                return i;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no such event for {program} within {within:?}"))
}

async fn port_open(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).await.is_ok()
}

fn pid_alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_stop_and_their_repeats() {
    let sd = Sd::start(Options::default()).await;
    let sup = sd.driver(&["app0"]);
    assert_eq!(sup.name(), "main");
    sup.reachable().await.unwrap();

    assert_eq!(info(&sup, "app0").await.state, ProcessState::Stopped);
    let t0 = Instant::now();
    sup.start("app0").await.unwrap();
    // wait=false: back once spawned, well before startsecs (1 s) is over.
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    let running = wait_state(&sup, "app0", ProcessState::Running, Duration::from_secs(10)).await;
    let pid = running.pid.expect("a running process has a pid");
    assert!(pid_alive(pid));
    assert!(
        running
            .description
            .starts_with(&format!("pid {pid}, uptime"))
    );
    // RUNNING only means up for startsecs; a slow machine may need longer to listen.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !port_open(sd.app_port).await {
        assert!(Instant::now() < deadline, "app0 does not listen");
        sleep(Duration::from_millis(50)).await;
    }

    // ALREADY_STARTED is success, and nothing is restarted.
    sup.start("app0").await.unwrap();
    assert_eq!(info(&sup, "app0").await.pid, Some(pid));

    // A second driver (a rouse restarted) sees the same process: it adopts, not restarts.
    let again = sd.driver(&["app0"]);
    let adopted = info(&again, "app0").await;
    assert_eq!(
        (adopted.state, adopted.pid),
        (ProcessState::Running, Some(pid))
    );
    drop(again);

    sup.stop("app0").await.unwrap();
    // stop returns once supervisord says it is gone.
    let stopped = info(&sup, "app0").await;
    assert_eq!(stopped.state, ProcessState::Stopped, "{stopped:?}");
    assert_eq!(stopped.pid, None);
    assert!(!port_open(sd.app_port).await);
    // NOT_RUNNING is success.
    sup.stop("app0").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_programs_are_bad_names() {
    let sd = Sd::start(Options::default()).await;
    let sup = sd.driver(&["app0", "nosuch"]);
    for program in ["nosuch", "g:nosuch", "nogroup:a", "a"] {
        match sup.start(program).await {
            Err(SupervisorError::BadName { program: p, why }) => {
                assert_eq!(p, program);
                assert!(
                    why.contains("not in the configuration of supervisord main"),
                    "{why}"
                );
            }
            other => panic!("start {program}: {other:?}"),
        }
        match sup.stop(program).await {
            Err(SupervisorError::BadName { program: p, .. }) => assert_eq!(p, program),
            other => panic!("stop {program}: {other:?}"),
        }
    }
    // A whole group is refused before asking supervisord.
    for program in ["g:*", "g:", ""] {
        assert!(
            matches!(
                sup.start(program).await,
                Err(SupervisorError::BadName { .. })
            ),
            "{program:?}"
        );
    }
    let e = sup.start("nosuch").await.unwrap_err().to_string();
    assert!(
        e.starts_with("unknown program \"nosuch\": not in the configuration of supervisord main"),
        "{e}"
    );
    // A configured program supervisord lacks is observed as Unknown, with the reason.
    let missing = info(&sup, "nosuch").await;
    assert_eq!(missing.state, ProcessState::Unknown);
    assert!(missing.description.contains("supervisorctl update"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_failures_carry_supervisords_reason() {
    let sd = Sd::start(Options {
        extra: "[program:missing]\ncommand=/nonexistent/server --port 1\nautostart=false\n\n\
                [program:noexec]\ncommand={dir}/supervisord.conf\nautostart=false\n\n\
                [program:crashy]\ncommand=sh -c \"echo bye; exit 3\"\nautostart=false\n\
                startsecs=1\nstartretries=1\n"
            .to_owned(),
        ..Default::default()
    })
    .await;
    let sup = sd.driver(&["missing", "noexec", "crashy"]);

    match sup.start("missing").await {
        Err(SupervisorError::Spawn { program, reason }) => {
            assert_eq!(program, "missing");
            assert!(reason.starts_with("NO_FILE"), "{reason}");
            assert!(reason.contains("/nonexistent/server"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // supervisord checks the file before spawning: nothing was started.
    assert_eq!(info(&sup, "missing").await.state, ProcessState::Stopped);

    match sup.start("noexec").await {
        Err(SupervisorError::Spawn { reason, .. }) => {
            assert!(reason.starts_with("NOT_EXECUTABLE"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    // Exits at once: the start may succeed (spawned) or report SPAWN_ERROR if supervisord
    // reaped it already; either way supervisord retries (startretries=1, 1 s backoff) and
    // ends FATAL, which is what is observed.
    match sup.start("crashy").await {
        Ok(()) => {}
        Err(SupervisorError::Spawn { reason, .. }) => {
            assert!(reason.starts_with("SPAWN_ERROR"), "{reason}")
        }
        Err(e) => panic!("{e:?}"),
    }
    let fatal = wait_state(&sup, "crashy", ProcessState::Fatal, Duration::from_secs(15)).await;
    assert_eq!(
        fatal.description,
        "Exited too quickly (process log may have details)"
    );
    assert_eq!(fatal.pid, None);
    // FATAL is not running: stopping it is a no-op.
    sup.stop("crashy").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_and_bare_names() {
    let sd = Sd::start(Options::default()).await;
    // "app0:app0" is spelled out; "g:a" and "g:b" are in group g.
    let sup = sd.driver(&["app0:app0", "g:a", "g:b"]);
    let names: Vec<String> = sup
        .observe()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.program)
        .collect();
    assert_eq!(names, ["app0:app0", "g:a", "g:b"]);

    sup.start("g:a").await.unwrap();
    let a = wait_state(&sup, "g:a", ProcessState::Running, Duration::from_secs(5)).await;
    assert_eq!(info(&sup, "g:b").await.state, ProcessState::Stopped);
    assert!(pid_alive(a.pid.unwrap()));
    sup.start("g:a").await.unwrap();

    // The bare and the spelled-out forms are the same process.
    sup.start("app0").await.unwrap();
    sup.start("app0:app0").await.unwrap();
    wait_state(
        &sup,
        "app0:app0",
        ProcessState::Running,
        Duration::from_secs(10),
    )
    .await;

    // Several at once, in one round trip.
    let results = sup.start_many(&["g:b", "g:a", "nosuch", "g:*"]).await;
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    assert!(matches!(results[2], Err(SupervisorError::BadName { .. })));
    assert!(matches!(results[3], Err(SupervisorError::BadName { .. })));
    wait_state(&sup, "g:b", ProcessState::Running, Duration::from_secs(5)).await;

    sup.stop("g:a").await.unwrap();
    assert_eq!(info(&sup, "g:a").await.state, ProcessState::Stopped);
    assert_eq!(info(&sup, "g:b").await.state, ProcessState::Running);
    assert!(!pid_alive(a.pid.unwrap()));
    sup.stop("app0").await.unwrap();
    assert_eq!(info(&sup, "app0:app0").await.state, ProcessState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_sees_external_stop_start_and_crash() {
    let sd = Sd::start(Options::default()).await;
    let poll = Duration::from_millis(250);
    let sup = Supervisord::new(&sd.config(poll), vec!["app0".to_owned(), "g:a".to_owned()]);
    let mut rx = sup.subscribe();
    // Two poll intervals, plus room for a loaded 2-core machine.
    let soon = 2 * poll + Duration::from_secs(1);

    // The first poll reports everything managed.
    let first = event(&mut rx, "g:a", |_| true, soon).await;
    assert_eq!(first.state, ProcessState::Stopped);

    sup.start("app0").await.unwrap();
    let running = event(
        &mut rx,
        "app0",
        |i| i.state == ProcessState::Running,
        Duration::from_secs(10),
    )
    .await;

    // supervisorctl returns once supervisord has stopped it.
    let out = sd.supervisorctl(&["stop", "app0"]).await;
    assert!(out.contains("stopped"), "{out}");
    let stopped = event(&mut rx, "app0", |i| i.state != ProcessState::Running, soon).await;
    assert_eq!(stopped.state, ProcessState::Stopped, "{stopped:?}");

    // ... and once it is RUNNING (after startsecs).
    let out = sd.supervisorctl(&["start", "app0"]).await;
    assert!(out.contains("started"), "{out}");
    let restarted = event(&mut rx, "app0", |i| i.state == ProcessState::Running, soon).await;
    let pid = restarted.pid.unwrap();
    assert_ne!(Some(pid), running.pid);

    // A crash (autorestart=false here, so it stays EXITED).
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let crashed = event(&mut rx, "app0", |i| i.state != ProcessState::Running, soon).await;
    assert_eq!(crashed.state, ProcessState::Exited, "{crashed:?}");
    assert!(
        crashed.description.starts_with("exited with status"),
        "{crashed:?}"
    );
    assert_eq!(crashed.pid, None);

    // Nothing changed, nothing sent (a running process's uptime does not count).
    sup.start("g:a").await.unwrap();
    event(&mut rx, "g:a", |i| i.state == ProcessState::Running, soon).await;
    sleep(3 * poll).await;
    assert!(
        matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Empty)),
        "no event without a change"
    );
}

/// A start that finds the program already running (started by hand since the last poll)
/// reports that process at once, as a start of its own does. Left to the poll, which reports
/// changes only, it was never reported when stopped again before the next poll: the poll's
/// STOPPED was what it had said last, and rouse kept a stopped server ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_finds_the_program_running_reports_that_process() {
    let sd = Sd::start(Options::default()).await;
    // A poll a minute: only the first one (at once) comes within this test.
    let sup = Supervisord::new(&sd.config(Duration::from_secs(60)), vec!["app0".to_owned()]);
    let mut rx = sup.subscribe();
    let first = event(&mut rx, "app0", |_| true, Duration::from_secs(10)).await;
    assert_eq!(first.state, ProcessState::Stopped);

    // supervisorctl returns once it is RUNNING (startsecs=1).
    let out = sd.supervisorctl(&["start", "app0"]).await;
    assert!(out.contains("started"), "{out}");
    let by_hand = info(&sup, "app0").await;
    assert_eq!(by_hand.state, ProcessState::Running);

    sup.start("app0").await.unwrap();
    let told = timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the start reports the process before the next poll")
        .unwrap();
    assert_eq!(told.program, "app0");
    assert_eq!(told.state, ProcessState::Running, "{told:?}");
    assert_eq!(
        told.pid, by_hand.pid,
        "the process started by hand, not a new one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_with_credentials() {
    let sd = Sd::start(Options {
        unix: true,
        auth: Some(("admin", "s3cret")),
        ..Default::default()
    })
    .await;
    let sup = sd.driver(&["g:a"]);
    sup.reachable().await.unwrap();
    sup.start("g:a").await.unwrap();
    wait_state(&sup, "g:a", ProcessState::Running, Duration::from_secs(5)).await;
    sup.stop("g:a").await.unwrap();
    assert_eq!(info(&sup, "g:a").await.state, ProcessState::Stopped);

    // Wrong password: a 401, said plainly, and Refused (asking again will not help until the config is fixed).
    let mut wrong = sd.config(Duration::from_millis(100));
    wrong.password = Some("guess".to_owned());
    let bad = Supervisord::new(&wrong, vec!["g:a".to_owned()]);
    for e in [
        bad.start("g:a").await.unwrap_err(),
        bad.stop("g:a").await.unwrap_err(),
        bad.observe().await.unwrap_err(),
        bad.reachable().await.unwrap_err(),
    ] {
        match e {
            SupervisorError::Refused(msg) => {
                assert!(
                    msg.contains("refused the username and password (HTTP 401)"),
                    "{msg}"
                );
                assert!(msg.contains("unix://"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while bad.last_error().is_none() {
        assert!(Instant::now() < deadline, "the poll did not report the 401");
        sleep(Duration::from_millis(20)).await;
    }
    assert!(bad.last_error().unwrap().contains("HTTP 401"));

    // No credentials at all.
    let mut none = sd.config(Duration::from_secs(1));
    none.username = None;
    none.password = None;
    let anonymous = Supervisord::new(&none, vec![]);
    let e = anonymous.reachable().await.unwrap_err().to_string();
    assert!(e.contains("requires a username and password"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisord_killed_then_restarted() {
    let mut sd = Sd::start(Options::default()).await;
    let sup = sd.driver(&["app0", "g:a"]);
    let mut rx = sup.subscribe();
    sup.start("g:a").await.unwrap();
    let a = wait_state(&sup, "g:a", ProcessState::Running, Duration::from_secs(5)).await;
    assert_eq!(sup.last_error(), None);

    sd.kill9();
    // Its child lives on, orphaned; it would not be supervisord's any more anyway.
    kill(Pid::from_raw(a.pid.unwrap() as i32), Signal::SIGKILL).unwrap();

    let t0 = Instant::now();
    for e in [
        sup.start("app0").await.unwrap_err(),
        sup.stop("app0").await.unwrap_err(),
        sup.observe().await.unwrap_err(),
        sup.reachable().await.unwrap_err(),
    ] {
        match e {
            SupervisorError::Unreachable(msg) => {
                assert!(
                    msg.contains("cannot connect to supervisord \"main\""),
                    "{msg}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    // (A poll that was under way at the kill may report the broken connection first.)
    let deadline = Instant::now() + Duration::from_secs(3);
    while !sup
        .last_error()
        .is_some_and(|e| e.contains("cannot connect"))
    {
        assert!(
            Instant::now() < deadline,
            "last_error: {:?}",
            sup.last_error()
        );
        sleep(Duration::from_millis(20)).await;
    }

    // Drain what was sent before the outage.
    while rx.try_recv().is_ok() {}

    // Back on the same port: the same driver works again, and subscribers get the fresh
    // state of everything (g:a is STOPPED in the new supervisord; app0 unchanged but sent).
    sd.spawn().await;
    let mut fresh = Vec::new();
    while fresh.len() < 2 {
        let i = timeout(Duration::from_secs(3), rx.recv())
            .await
            .expect("fresh state after the restart")
            .unwrap();
        fresh.push((i.program, i.state));
    }
    fresh.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        fresh,
        [
            ("app0".to_owned(), ProcessState::Stopped),
            ("g:a".to_owned(), ProcessState::Stopped)
        ]
    );
    assert_eq!(sup.last_error(), None);
    sup.reachable().await.unwrap();
    sup.start("g:a").await.unwrap();
    wait_state(&sup, "g:a", ProcessState::Running, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_is_kept_and_reused() {
    let sd = Sd::start(Options::default()).await;
    let SupervisordUrl::Http { port, .. } = sd.url else {
        unreachable!()
    };
    // A forwarder in front of supervisord that counts connections.
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_port = front.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let forwarder = tokio::spawn(async move {
        loop {
            let (mut client, _) = front.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut server = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    let mut config = sd.config(Duration::from_secs(3600));
    config.url = SupervisordUrl::Http {
        host: "127.0.0.1".to_owned(),
        port: front_port,
        path: "/RPC2".to_owned(),
    };
    let sup = Supervisord::new(&config, vec!["g:a".to_owned()]);
    for _ in 0..20 {
        sup.observe().await.unwrap();
    }
    sup.start("g:a").await.unwrap();
    sup.stop("g:a").await.unwrap();
    sup.reachable().await.unwrap();
    // The poll task's first poll may have raced the first call onto a second connection.
    let n = accepted.load(Ordering::SeqCst);
    assert!((1..=2).contains(&n), "{n} connections");
    forwarder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_bounded_by_the_timeout() {
    // Accepts, reads, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            held.push(s);
        }
    });
    let config = SupervisordConfig {
        name: "mute".to_owned(),
        url: SupervisordUrl::Http {
            host: "127.0.0.1".to_owned(),
            port,
            path: "/RPC2".to_owned(),
        },
        username: None,
        password: None,
        tls: None,
        poll_interval: Duration::from_millis(100),
        timeout: Duration::from_millis(300),
    };
    let sup = Supervisord::new(&config, vec!["app0".to_owned()]);
    let t0 = Instant::now();
    match sup.start("app0").await {
        Err(SupervisorError::Unreachable(msg)) => {
            assert!(msg.contains("no answer from supervisord \"mute\""), "{msg}");
            assert!(msg.contains("300ms"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let t0 = Instant::now();
    assert!(matches!(
        sup.stop("app0").await,
        Err(SupervisorError::Unreachable(_))
    ));
    assert!(matches!(
        sup.observe().await,
        Err(SupervisorError::Unreachable(_))
    ));
    assert!(t0.elapsed() < Duration::from_secs(3));
    sleep(Duration::from_millis(600)).await;
    assert!(sup.last_error().unwrap().contains("no answer"));
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_garbled_answers() {
    // Nothing listens: refused at once.
    let port = free_port();
    let config = |port: u16| SupervisordConfig {
        name: "x".to_owned(),
        url: SupervisordUrl::Http {
            host: "127.0.0.1".to_owned(),
            port,
            path: "/RPC2".to_owned(),
        },
        username: None,
        password: None,
        tls: None,
        poll_interval: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
    };
    let sup = Supervisord::new(&config(port), vec![]);
    let t0 = Instant::now();
    match sup.start("app0").await {
        Err(SupervisorError::Unreachable(msg)) => {
            assert!(msg.contains("cannot connect"), "{msg}");
            assert!(
                msg.contains(&format!("http://127.0.0.1:{port}/RPC2")),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(1));

    // No such socket file.
    let dir = tempfile::tempdir().unwrap();
    let mut unix = config(1);
    unix.url = SupervisordUrl::Unix {
        path: dir.path().join("none.sock"),
    };
    let e = Supervisord::new(&unix, vec![]).observe().await.unwrap_err();
    assert!(matches!(e, SupervisorError::Unreachable(_)), "{e:?}");

    // HTTP 200 with something that is not XML-RPC; and another status.
    for (answer, expect) in [
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
            "malformed answer",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n<methodResponse><params></methodResponse",
            "malformed answer",
        ),
        (
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            "answered HTTP 404",
        ),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(answer.as_bytes()).await;
                    sleep(Duration::from_secs(5)).await;
                });
            }
        });
        let sup = Supervisord::new(&config(port), vec![]);
        match sup.start("app0").await {
            Err(SupervisorError::Other(msg)) => assert!(msg.contains(expect), "{msg}"),
            other => panic!("{other:?}"),
        }
        server.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_programs_changes_what_is_observed_and_sent() {
    let sd = Sd::start(Options::default()).await;
    let sup = sd.driver(&["g:a"]);
    let mut rx = sup.subscribe();
    event(&mut rx, "g:a", |_| true, Duration::from_secs(3)).await;
    sup.set_programs(vec!["g:b".to_owned()]);
    // Newly managed: sent at the next poll although unchanged.
    event(&mut rx, "g:b", |_| true, Duration::from_secs(3)).await;
    let names: Vec<String> = sup
        .observe()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.program)
        .collect();
    assert_eq!(names, ["g:b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_driver_stops_polling() {
    let sd = Sd::start(Options::default()).await;
    let sup = sd.driver(&["g:a"]);
    let mut rx = sup.subscribe();
    event(&mut rx, "g:a", |_| true, Duration::from_secs(3)).await;
    drop(sup);
    // The poll task ends, and with it the last sender.
    let closed = timeout(Duration::from_secs(2), async {
        loop {
            if let Err(broadcast::error::RecvError::Closed) = rx.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the poll task outlived its driver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_during_a_stop_waits_then_starts() {
    // Takes half a second to exit on SIGTERM: STOPPING that long.
    let sd = Sd::start(Options {
        extra: "[program:slowstop]\ncommand=python3 -c \"import signal, sys, time; \
                signal.signal(signal.SIGTERM, lambda *a: (time.sleep(0.5), sys.exit(0))); \
                time.sleep(1000)\"\nautostart=false\nstartsecs=0\nstopwaitsecs=5\n"
            .to_owned(),
        ..Default::default()
    })
    .await;
    let sup = sd.driver(&["slowstop"]);
    sup.start("slowstop").await.unwrap();
    let first = wait_state(
        &sup,
        "slowstop",
        ProcessState::Running,
        Duration::from_secs(5),
    )
    .await;
    // Let python install its handler.
    sleep(Duration::from_millis(500)).await;

    let stopper = {
        let sup = sup.clone();
        tokio::spawn(async move { sup.stop("slowstop").await })
    };
    wait_state(
        &sup,
        "slowstop",
        ProcessState::Stopping,
        Duration::from_secs(2),
    )
    .await;
    // supervisord alone would answer "started" and do nothing.
    sup.start("slowstop").await.unwrap();
    stopper.await.unwrap().unwrap();
    let second = info(&sup, "slowstop").await;
    assert!(
        matches!(second.state, ProcessState::Starting | ProcessState::Running),
        "{second:?}"
    );
    assert_ne!(second.pid, first.pid);
    assert!(second.pid.is_some_and(pid_alive));
}
