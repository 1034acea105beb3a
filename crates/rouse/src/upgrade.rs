//! `rouse upgrade` (and SIGUSR2, and a reload that changes `[proxy]`, `[log]`, `[admin]` or
//! `[cluster]`):
//! a new rouse process takes over, and this one drains and exits, with no connection
//! refused.
//!
//! # The sequence
//! 1. The old process binds a unix socket in a private temporary directory and spawns the
//!    binary now at the path it was started from, with its own arguments, working directory
//!    and environment, plus `ROUSE_UPGRADE_SOCKET`.
//! 2. The new process connects (the old checks its pid with `SO_PEERCRED`) and receives every
//!    listening socket with its spec ([`crate::handover`]). It reads and validates the
//!    config, uses the inherited socket of each listener (binding those that are new), and
//!    answers `prepared`, or `failed` with the reason, and exits. Until then the old one
//!    serves as before; a failure, a crash or [`UPGRADE_TIMEOUT`] leaves it serving, and
//!    `rouse upgrade` exits 2 with the reason.
//! 3. The old process stops accepting (connections queue in the shared sockets' backlogs
//!    meanwhile, none is refused), lets go of its embedded children without stopping them
//!    (`Embedded::hand_over`), and sends them with their output pipes.
//! 4. The new process adopts them, starts serving, and answers `ready` with its pid; `rouse
//!    upgrade` prints it. Should the new process fail before that, the old one takes its
//!    children back and accepts again on the same sockets (the connects that came meanwhile
//!    waited in the backlogs), and `rouse upgrade` exits 2.
//! 5. The old process finishes its in-flight requests and open WebSockets (up to
//!    `shutdown_timeout`) and exits, leaving its children and supervisord's programs running.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use rouse_supervisor::{Embedded, HandedChild};
use tokio_util::sync::CancellationToken;

use crate::handover::{self, Channel, ChildRecord, ENV_SOCKET, Inherited, Msg};
use crate::serving::Serving;

/// How long the new process may take to say it is prepared, and then ready.
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the new process waits for its predecessor's children: the old one may have to
/// let a stopping child finish first.
const CHILDREN_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two looks at whether the new process is still alive.
const POLL: Duration = Duration::from_millis(100);

/// How to start the next rouse: the binary rouse was started from, and its arguments.
#[derive(Debug, Clone)]
pub struct Launch {
    pub exe: PathBuf,
    pub args: Vec<OsString>,
    /// The config file this rouse read, made absolute: given to the new process as
    /// `ROUSE_CONFIG`, so that one started without `-c` reads the same file even if a
    /// `./rouse.toml` appeared since (with `-c`, its arguments already name it).
    pub config: Option<PathBuf>,
}

impl Launch {
    /// This process's: found at start-up, as the shell found it (`argv[0]`, through `PATH`
    /// when it has no slash; symlinks not resolved), so that an upgrade runs whatever binary
    /// is at that path then: a new file, or a symlink switched to another version.
    /// `/proc/self/exe` would name the running file, resolved, or "(deleted)" once replaced.
    pub fn current() -> std::io::Result<Launch> {
        let mut args = std::env::args_os();
        let argv0 = args.next().map(PathBuf::from);
        let exe = match argv0 {
            Some(p) if p.is_absolute() => p,
            Some(p) if p.components().count() > 1 => std::env::current_dir()?.join(p),
            Some(p) => in_path(&p).map_or_else(std::env::current_exe, Ok)?,
            None => std::env::current_exe()?,
        };
        Ok(Launch {
            exe,
            args: args.collect(),
            config: None,
        })
    }

    /// This launch, for the config file at `path`.
    pub fn reading(self, path: &std::path::Path) -> Launch {
        Launch {
            config: std::path::absolute(path).ok(),
            ..self
        }
    }
}

/// Where `PATH` finds the command `name`.
fn in_path(name: &std::path::Path) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Why an upgrade did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpgradeError {
    /// This rouse cannot start another (it runs inside a test, not as `rouse run`).
    #[error("{0}")]
    Unavailable(String),
    /// The new process failed; this one keeps serving.
    #[error("{0}")]
    Failed(String),
}

/// What the old process hands over, and how it stops.
pub(crate) struct Upgrader {
    launch: Option<Launch>,
    /// Every listening socket, by spec (duplicates of those the servers accept on).
    sockets: Vec<(String, OwnedFd)>,
    embedded: Option<Arc<Embedded>>,
    serving: Arc<Serving>,
    handed_over: CancellationToken,
    /// The new process's pid once handed over; also one upgrade at a time.
    successor: tokio::sync::Mutex<Option<u32>>,
}

impl Upgrader {
    pub fn new(
        launch: Option<Launch>,
        sockets: Vec<(String, OwnedFd)>,
        embedded: Option<Arc<Embedded>>,
        serving: Arc<Serving>,
        handed_over: CancellationToken,
    ) -> Upgrader {
        Upgrader {
            launch,
            sockets,
            embedded,
            serving,
            handed_over,
            successor: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether this rouse can start another (it runs as `rouse run`).
    pub fn available(&self) -> bool {
        self.launch.is_some()
    }

    /// Cancelled once a new process has taken over: this one should then shut down.
    pub fn handed_over(&self) -> CancellationToken {
        self.handed_over.clone()
    }

    /// Starts a new rouse and hands everything over to it; the new process's pid.
    pub async fn upgrade(&self) -> Result<u32, UpgradeError> {
        let mut successor = self.successor.lock().await;
        if let Some(pid) = *successor {
            return Err(UpgradeError::Failed(format!(
                "this rouse has already handed over to pid {pid}"
            )));
        }
        let launch = self.launch.clone().ok_or_else(|| {
            UpgradeError::Unavailable(
                "this rouse was not started as `rouse run`: it cannot start another".to_owned(),
            )
        })?;
        let mut sockets = Vec::with_capacity(self.sockets.len());
        for (spec, fd) in &self.sockets {
            let dup = fd
                .try_clone()
                .map_err(|e| UpgradeError::Failed(format!("cannot duplicate {spec}: {e}")))?;
            sockets.push((spec.clone(), dup));
        }
        tracing::info!(exe = %launch.exe.display(), "upgrade: starting a new rouse");
        let prepared = tokio::task::spawn_blocking(move || prepare(&launch, sockets))
            .await
            .map_err(|e| UpgradeError::Failed(e.to_string()))?
            .map_err(|e| {
                tracing::error!("upgrade failed, this rouse keeps serving: {e}");
                UpgradeError::Failed(e)
            })?;
        // From here on the new process has everything it needs but the children.
        self.serving.stop_accepting();
        let children = match &self.embedded {
            Some(e) => e.hand_over().await,
            None => Vec::new(),
        };
        let finished = tokio::task::spawn_blocking(move || finish(prepared, children)).await;
        let pid = match finished {
            Ok(Ok(pid)) => pid,
            Ok(Err((e, children))) => {
                self.take_back(children);
                tracing::error!("upgrade failed, this rouse serves again: {e}");
                return Err(UpgradeError::Failed(e));
            }
            Err(e) => {
                // The children's descriptors went with the task: they run on, unmanaged.
                self.take_back(Vec::new());
                return Err(UpgradeError::Failed(format!(
                    "the handover task failed: {e}"
                )));
            }
        };
        *successor = Some(pid);
        tracing::info!(
            pid,
            "upgrade: the new rouse serves; finishing in-flight requests, then exiting"
        );
        self.handed_over.cancel();
        Ok(pid)
    }
}

impl Upgrader {
    /// The new process failed after this one stopped accepting: the children are this
    /// one's again, and it accepts again on the same sockets (connects waited in their
    /// backlogs meanwhile).
    fn take_back(&self, children: Vec<HandedChild>) {
        if let Some(e) = &self.embedded {
            e.take_back(children);
        }
        let mut listeners = Vec::new();
        let mut admin = None;
        for (spec, fd) in &self.sockets {
            let again = fd.try_clone().and_then(|fd| {
                if spec.starts_with("admin:") {
                    admin = Some(handover::tcp_listener(fd)?);
                } else {
                    listeners.push(handover::listener(spec, fd)?);
                }
                Ok(())
            });
            if let Err(e) = again {
                tracing::error!(listener = spec, "cannot accept on it again: {e}");
            }
        }
        self.serving.serve(listeners, admin);
    }
}

/// A new process that said it is prepared.
struct Prepared {
    child: Child,
    channel: Channel,
    pid: u32,
    /// Holds the socket's directory until the end.
    _dir: tempfile::TempDir,
}

/// Steps 1 and 2 (blocking): spawn, hand the listeners over, wait for `prepared`.
fn prepare(launch: &Launch, sockets: Vec<(String, OwnedFd)>) -> Result<Prepared, String> {
    let deadline = Instant::now() + UPGRADE_TIMEOUT;
    // Made 0700: only rouse's user can connect.
    let dir = tempfile::Builder::new()
        .prefix("rouse-upgrade-")
        .tempdir()
        .map_err(|e| format!("cannot create a directory for the handover socket: {e}"))?;
    let path = dir.path().join("handover.sock");
    let listener = handover::Listener::bind(&path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    let mut command = Command::new(&launch.exe);
    command.args(&launch.args).env(ENV_SOCKET, &path);
    if let Some(config) = &launch.config {
        command.env(crate::locate::ENV_CONFIG, config);
    }
    // systemd's word to this process: the new one gets its sockets from this one, and owns
    // the watchdog (WATCHDOG_PID would name this pid); NOTIFY_SOCKET and WATCHDOG_USEC stay.
    for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_PID"] {
        command.env_remove(var);
    }
    let mut child = command
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", launch.exe.display()))?;
    let pid = child.id();
    let result = (|| {
        let channel = loop {
            match listener.accept(POLL) {
                Ok(c) => break c,
                Err(e) if handover::is_timeout(&e) => {}
                Err(e) => return Err(format!("accepting the new process's connection: {e}")),
            }
            check_alive(&mut child, deadline, "connected")?;
        };
        match channel.peer_pid() {
            Ok(peer) if peer == pid => {}
            Ok(peer) => return Err(format!("pid {peer} connected instead of the new rouse")),
            Err(e) => return Err(format!("cannot tell who connected: {e}")),
        }
        let specs = sockets.iter().map(|(s, _)| s.clone()).collect();
        let fds: Vec<BorrowedFd<'_>> = sockets.iter().map(|(_, fd)| fd.as_fd()).collect();
        channel
            .send(&Msg::Listeners { specs }, &fds)
            .map_err(|e| format!("handing the listening sockets over: {e}"))?;
        match answer(&channel, &mut child, deadline, "prepared")? {
            Msg::Prepared { .. } => Ok(channel),
            other => Err(format!("unexpected answer {other:?}")),
        }
    })();
    match result {
        Ok(channel) => Ok(Prepared {
            child,
            channel,
            pid,
            _dir: dir,
        }),
        Err(e) => {
            abandon(&mut child);
            Err(format!("the new rouse (pid {pid}) {e}"))
        }
    }
}

/// Steps 3 and 4 (blocking): the children go, `ready` comes back. On failure the children
/// come back too.
fn finish(mut p: Prepared, children: Vec<HandedChild>) -> Result<u32, (String, Vec<HandedChild>)> {
    let deadline = Instant::now() + UPGRADE_TIMEOUT;
    let mut records = Vec::with_capacity(children.len());
    let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
    for c in &children {
        records.push(ChildRecord {
            program: c.program.clone(),
            pid: c.pid,
            pgid: c.pgid,
            starttime: c.starttime,
            stdout: c.stdout.is_some(),
            stderr: c.stderr.is_some(),
        });
        fds.extend(c.stdout.as_ref().map(AsFd::as_fd));
        fds.extend(c.stderr.as_ref().map(AsFd::as_fd));
    }
    let pid = p.pid;
    let sent = p.channel.send(&Msg::Children { children: records }, &fds);
    drop(fds);
    let result = sent
        .map_err(|e| format!("handing the children over: {e}"))
        .and_then(|()| answer(&p.channel, &mut p.child, deadline, "ready"));
    let why = match result {
        Ok(Msg::Ready { .. }) => return Ok(pid),
        Ok(other) => format!("the new rouse (pid {pid}): unexpected answer {other:?}"),
        Err(e) => format!("the new rouse (pid {pid}) {e}"),
    };
    abandon(&mut p.child);
    Err((why, children))
}

/// The next message from the new process, or why none will come.
fn answer(
    channel: &Channel,
    child: &mut Child,
    deadline: Instant,
    what: &str,
) -> Result<Msg, String> {
    loop {
        match channel.recv(POLL) {
            Ok((Msg::Failed { error }, _)) => return Err(format!("failed: {error}")),
            Ok((msg, _)) => return Ok(msg),
            Err(e) if handover::is_timeout(&e) => check_alive(child, deadline, what)?,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                // Its exit status says more than the closed connection.
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until {
                    check_alive(child, deadline, what)?;
                    std::thread::sleep(POLL / 4);
                }
                return Err(format!("closed the handover before it was {what}"));
            }
            Err(e) => return Err(format!("handover connection: {e}")),
        }
    }
}

fn check_alive(child: &mut Child, deadline: Instant, what: &str) -> Result<(), String> {
    match child.try_wait() {
        Ok(Some(status)) => return Err(format!("{status} before it was {what}")),
        Ok(None) => {}
        Err(e) => return Err(format!("cannot watch it: {e}")),
    }
    if Instant::now() >= deadline {
        return Err(format!(
            "was not {what} within {UPGRADE_TIMEOUT:?}; killed it"
        ));
    }
    Ok(())
}

/// A new process that failed: gone, and reaped.
fn abandon(child: &mut Child) {
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(POLL / 4);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The new process's side: a connection to its predecessor, and what it was given.
pub struct Incoming {
    channel: Channel,
    /// The listening sockets, by spec; what is left in it once bound is closed.
    pub inherited: Inherited,
}

impl Incoming {
    /// Connects to the old rouse when `ROUSE_UPGRADE_SOCKET` says this process is an
    /// upgrade, and receives its listening sockets.
    pub fn from_env() -> Option<Result<Incoming, String>> {
        let path = std::env::var_os(ENV_SOCKET)?;
        Some(Incoming::connect(PathBuf::from(path)))
    }

    fn connect(path: PathBuf) -> Result<Incoming, String> {
        let channel = Channel::connect(&path)
            .map_err(|e| format!("cannot reach the old rouse at {}: {e}", path.display()))?;
        let (msg, fds) = channel
            .recv(UPGRADE_TIMEOUT)
            .map_err(|e| format!("no listening sockets from the old rouse: {e}"))?;
        let Msg::Listeners { specs } = msg else {
            return Err(format!("unexpected message from the old rouse: {msg:?}"));
        };
        if specs.len() != fds.len() {
            return Err(format!(
                "{} listeners named but {} sockets received",
                specs.len(),
                fds.len()
            ));
        }
        Ok(Incoming {
            channel,
            inherited: Inherited::new(specs.into_iter().zip(fds).collect()),
        })
    }

    /// Tells the old rouse why this one gives up (it keeps serving).
    pub fn failed(&self, error: &str) {
        let _ = self.channel.send(
            &Msg::Failed {
                error: error.to_owned(),
            },
            &[],
        );
    }

    /// Says this process is prepared, and waits for the old one's children.
    pub fn prepared(&mut self) -> Result<Vec<HandedChild>, String> {
        for spec in self.inherited.unused() {
            tracing::info!(listener = spec, "not in the new configuration: closed");
        }
        self.inherited = Inherited::default();
        let pid = std::process::id();
        self.channel
            .send(&Msg::Prepared { pid }, &[])
            .map_err(|e| format!("cannot answer the old rouse: {e}"))?;
        let (msg, fds) = self
            .channel
            .recv(CHILDREN_TIMEOUT)
            .map_err(|e| format!("no word from the old rouse: {e}"))?;
        let Msg::Children { children } = msg else {
            return Err(format!("unexpected message from the old rouse: {msg:?}"));
        };
        let mut fds = fds.into_iter();
        Ok(children
            .into_iter()
            .map(|c| HandedChild {
                stdout: if c.stdout { fds.next() } else { None },
                stderr: if c.stderr { fds.next() } else { None },
                program: c.program,
                pid: c.pid,
                pgid: c.pgid,
                starttime: c.starttime,
            })
            .collect())
    }

    /// Serving: the old rouse may go.
    pub fn ready(self) {
        let pid = std::process::id();
        if let Err(e) = self.channel.send(&Msg::Ready { pid }, &[]) {
            tracing::warn!("cannot tell the old rouse this one is ready: {e}");
        }
    }
}
