//! The test backend as a real child process.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN_NAME: &str = "rouse-test-backend";
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The path of the `rouse-test-backend` binary.
///
/// `ROUSE_TEST_BACKEND` wins if set. Otherwise the binary is looked for beside the running
/// executable and one directory up: Cargo puts test executables in `target/<profile>/deps`
/// and binaries in `target/<profile>`. That guess needs the binary to be built already,
/// which Cargo only guarantees for integration tests of this package; those should pass
/// [`crate::backend_bin!`]'s path to [`BackendProcessBuilder::bin`] (or set the variable).
pub fn backend_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("ROUSE_TEST_BACKEND") {
        return path.into();
    }
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("cannot find the running executable: {e}"));
    let name = format!("{BIN_NAME}{}", std::env::consts::EXE_SUFFIX);
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(&name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "cannot find {name} near {}: build it (cargo build -p rouse-e2e) or set \
                 ROUSE_TEST_BACKEND",
                exe.display()
            )
        })
}

/// How to start a [`BackendProcess`].
#[derive(Debug, Clone)]
pub struct BackendProcessBuilder {
    id: String,
    listen: Option<SocketAddr>,
    delay_listen: Option<Duration>,
    exit_after_requests: Option<u64>,
    latency: Option<Duration>,
    workers: Option<usize>,
    port_file: Option<PathBuf>,
    bin: Option<PathBuf>,
    ready_timeout: Duration,
}

impl BackendProcessBuilder {
    /// A backend with this id, listening on 127.0.0.1 with an OS-picked port.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            listen: None,
            delay_listen: None,
            exit_after_requests: None,
            latency: None,
            workers: None,
            port_file: None,
            bin: None,
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }

    /// `--listen`.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// `--delay-listen`: how long the backend waits before binding. Added to the ready
    /// timeout.
    pub fn delay_listen(mut self, delay: Duration) -> Self {
        self.delay_listen = Some(delay);
        self
    }

    /// `--exit-after-requests`: exit with code 1 after this many requests.
    pub fn exit_after_requests(mut self, n: u64) -> Self {
        self.exit_after_requests = Some(n);
        self
    }

    /// `--latency-ms`: added to every request but `/stats`.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
        self
    }

    /// `--workers`: this many sync workers, each reading its request's whole body first.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// `--port-file`: where the backend writes its port once bound.
    pub fn port_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.port_file = Some(path.into());
        self
    }

    /// The binary to run instead of [`backend_bin()`]; pass `rouse_e2e::backend_bin!()`.
    pub fn bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.bin = Some(path.into());
        self
    }

    /// How long to wait for the `listening` line (default 10 s, plus any listen delay).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// The command-line arguments this builder stands for, e.g. for a proxy config that
    /// starts the backend itself.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--id".into(), self.id.clone().into()];
        if let Some(listen) = self.listen {
            args.extend(["--listen".into(), listen.to_string().into()]);
        }
        if let Some(delay) = self.delay_listen {
            args.extend([
                "--delay-listen".into(),
                delay.as_millis().to_string().into(),
            ]);
        }
        if let Some(n) = self.exit_after_requests {
            args.extend(["--exit-after-requests".into(), n.to_string().into()]);
        }
        if let Some(latency) = self.latency {
            args.extend([
                "--latency-ms".into(),
                latency.as_millis().to_string().into(),
            ]);
        }
        if let Some(n) = self.workers {
            args.extend(["--workers".into(), n.to_string().into()]);
        }
        if let Some(path) = &self.port_file {
            args.extend(["--port-file".into(), path.clone().into_os_string()]);
        }
        args
    }

    /// The binary this builder runs.
    pub fn program(&self) -> PathBuf {
        self.bin.clone().unwrap_or_else(backend_bin)
    }

    /// Starts the backend and waits for its `listening` line. Panics if it does not come in
    /// time or the process exits first.
    pub async fn spawn(self) -> BackendProcess {
        let program = self.program();
        let mut child = Command::new(&program)
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let pid = child
            .id()
            .unwrap_or_else(|| panic!("{} exited at once", program.display()));
        let Some(stdout) = child.stdout.take() else {
            panic!("the backend's stdout was not piped");
        };
        let mut lines = BufReader::new(stdout).lines();
        let timeout = self.ready_timeout + self.delay_listen.unwrap_or_default();

        let line = match tokio::time::timeout(timeout, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => {
                let status = child.wait().await;
                panic!("backend {:?} exited before listening: {status:?}", self.id);
            }
            Ok(Err(e)) => panic!("cannot read backend {:?}'s stdout: {e}", self.id),
            Err(_) => panic!(
                "backend {:?} printed no `listening` line within {timeout:?}",
                self.id
            ),
        };
        let addr = line
            .strip_prefix("listening ")
            .and_then(|addr| addr.trim().parse::<SocketAddr>().ok())
            .unwrap_or_else(|| {
                panic!(
                    "backend {:?} printed {line:?}, not `listening ADDR`",
                    self.id
                )
            });

        // Keep reading so an unexpected print can never block the backend on a full pipe.
        let id = self.id.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[backend {id}] {line}");
            }
        });

        BackendProcess {
            child,
            id: self.id,
            addr,
            pid,
        }
    }
}

/// A running `rouse-test-backend` process. Dropping it kills the process (SIGKILL).
#[derive(Debug)]
pub struct BackendProcess {
    child: Child,
    id: String,
    addr: SocketAddr,
    pid: u32,
}

impl BackendProcess {
    /// Starts a backend with this id on `listen` (127.0.0.1 with an OS-picked port if
    /// `None`); see [`BackendProcess::builder`] for the other options.
    pub async fn spawn(id: &str, listen: Option<SocketAddr>) -> Self {
        let mut builder = Self::builder(id);
        if let Some(listen) = listen {
            builder = builder.listen(listen);
        }
        builder.spawn().await
    }

    /// A builder for the options [`BackendProcess::spawn`] does not take.
    pub fn builder(id: &str) -> BackendProcessBuilder {
        BackendProcessBuilder::new(id)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        super::url(self.addr, path)
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its process id (still reported after it exits).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// SIGKILL, then waits for it to be gone.
    pub async fn kill(&mut self) {
        // Fails only if it already exited, which is what we want anyway.
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM: the backend stops accepting, finishes in-flight requests (up to 5 s) and
    /// exits 0. Returns at once; see [`BackendProcess::wait_exit`].
    pub fn terminate(&mut self) {
        self.signal(Signal::SIGTERM);
    }

    /// Sends `signal`, unless the process has already been reaped (its pid may be reused).
    pub fn signal(&mut self, signal: Signal) {
        if self.try_exit_status().is_some() {
            return;
        }
        let Ok(pid) = i32::try_from(self.pid) else {
            panic!("pid {} does not fit a pid_t", self.pid);
        };
        // ESRCH means it died between the check and now; nothing left to signal.
        let _ = kill(Pid::from_raw(pid), signal);
    }

    /// Waits for the process to exit; panics after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => panic!("cannot wait for backend {:?}: {e}", self.id),
            Err(_) => panic!("backend {:?} did not exit within {timeout:?}", self.id),
        }
    }

    /// How it exited, if it has.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}
