//! A real supervisord of a test's own: its config, socket, logs and pid file in a temporary
//! directory, on a free loopback port or a unix socket, with the `[program:x]` sections the test
//! gives it (usually the test backend, see [`Program::backend`]).
//!
//! supervisord is Debian's `supervisor` package (scripts/test.sh installs it). The process is
//! checked through a bare XML-RPC exchange of its own ([`SupervisordProcess::statename`],
//! [`SupervisordProcess::pid_of`]), never through the rouse code under test, and through
//! `supervisorctl` ([`SupervisordProcess::supervisorctl`]).
//!
//! Dropping a [`SupervisordProcess`] SIGKILLs supervisord and every process it started, those
//! a [`SupervisordProcess::kill9`] orphaned included (each program runs in a process group of
//! its own, which is what is killed).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

use super::net::unique_port;
use super::process::backend_bin;

/// How long supervisord may take to answer after being spawned.
const ANSWER_WITHIN: Duration = Duration::from_secs(20);
/// Bound of one raw XML-RPC exchange or one `supervisorctl` run.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`SupervisordProcess::stop`] waits for supervisord to stop its programs and exit.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// One `[program:NAME]` section. The defaults suit rouse, which starts and stops the programs
/// itself: `autostart=false`, `autorestart=false`, `startsecs=1`, `stopwaitsecs=3`, and
/// `stopasgroup`/`killasgroup` so that nothing a program spawned outlives it.
#[derive(Debug, Clone)]
pub struct Program {
    name: String,
    settings: Vec<(String, String)>,
}

impl Program {
    /// A program running `command` (supervisord splits it like a shell would, but runs no
    /// shell).
    pub fn new(name: &str, command: &str) -> Program {
        let mut p = Program {
            name: name.to_owned(),
            settings: Vec::new(),
        };
        for (key, value) in [
            ("command", command),
            ("autostart", "false"),
            ("autorestart", "false"),
            ("startsecs", "1"),
            ("stopwaitsecs", "3"),
            ("stopasgroup", "true"),
            ("killasgroup", "true"),
        ] {
            p = p.set(key, value);
        }
        p
    }

    /// The test backend ([`backend_bin()`]) as program `name`:
    /// `rouse-test-backend --listen ADDR --id NAME ARGS...`.
    pub fn backend(name: &str, listen: SocketAddr, args: &[&str]) -> Program {
        Program::backend_with_bin(&backend_bin(), name, listen, args)
    }

    /// [`Program::backend`] with the binary given; pass `rouse_e2e::backend_bin!()` from an
    /// integration test of this package.
    pub fn backend_with_bin(bin: &Path, name: &str, listen: SocketAddr, args: &[&str]) -> Program {
        let mut argv = vec![
            bin.display().to_string(),
            "--listen".to_owned(),
            listen.to_string(),
            "--id".to_owned(),
            name.to_owned(),
        ];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        let command = argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
        Program::new(name, &command)
    }

    /// Sets `key=value` in the section, replacing an earlier value of `key`.
    pub fn set(mut self, key: &str, value: &str) -> Program {
        match self.settings.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value.to_owned(),
            None => self.settings.push((key.to_owned(), value.to_owned())),
        }
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn section(&self) -> String {
        let mut s = format!("[program:{}]\n", self.name);
        for (k, v) in &self.settings {
            let _ = writeln!(s, "{k}={v}");
        }
        s
    }
}

/// Quotes `arg` for supervisord's shlex split, when it needs it.
fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\"'\"'"))
    }
}

/// Where supervisord serves XML-RPC.
#[derive(Debug, Clone)]
enum Listen {
    Tcp(u16),
    Unix(PathBuf),
}

/// How to start a [`SupervisordProcess`].
#[derive(Debug, Clone, Default)]
pub struct SupervisordBuilder {
    unix: bool,
    auth: Option<(String, String)>,
    programs: Vec<Program>,
    extra: String,
}

impl SupervisordBuilder {
    /// Serve on `[unix_http_server] file=DIR/s.sock` instead of a loopback port.
    pub fn unix_socket(mut self) -> Self {
        self.unix = true;
        self
    }

    /// Require these credentials (basic auth) on the XML-RPC endpoint.
    pub fn auth(mut self, username: &str, password: &str) -> Self {
        self.auth = Some((username.to_owned(), password.to_owned()));
        self
    }

    pub fn program(mut self, program: Program) -> Self {
        self.programs.push(program);
        self
    }

    /// Further config text (`[group:...]` sections, ...), appended as is.
    pub fn extra(mut self, text: &str) -> Self {
        self.extra.push_str(text);
        self.extra.push('\n');
        self
    }

    /// Writes the config, starts supervisord and waits until it answers.
    pub async fn spawn(self) -> SupervisordProcess {
        let dir = tempfile::Builder::new()
            .prefix("sd")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let d = dir.path().display().to_string();
        let (listen, server, ctl_url) = if self.unix {
            let sock = dir.path().join("s.sock");
            let text = format!("[unix_http_server]\nfile={}\n", sock.display());
            let ctl = format!("unix://{}", sock.display());
            (Listen::Unix(sock), text, ctl)
        } else {
            let port = unique_port();
            (
                Listen::Tcp(port),
                format!("[inet_http_server]\nport=127.0.0.1:{port}\n"),
                format!("http://127.0.0.1:{port}"),
            )
        };
        let creds = match &self.auth {
            Some((u, p)) => format!("username={u}\npassword={p}\n"),
            None => String::new(),
        };
        let mut conf = format!(
            "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\nloglevel=info\n\
             pidfile={d}/supervisord.pid\nchildlogdir={d}\n\n\
             [rpcinterface:supervisor]\n\
             supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
             {server}{creds}\n\
             [supervisorctl]\nserverurl={ctl_url}\n{creds}\n"
        );
        for p in &self.programs {
            conf.push_str(&p.section());
            conf.push('\n');
        }
        conf.push_str(&self.extra);
        let conf_path = dir.path().join("supervisord.conf");
        std::fs::write(&conf_path, conf)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf_path.display()));
        let mut sd = SupervisordProcess {
            dir,
            conf: conf_path,
            child: None,
            listen,
            auth: self.auth,
            orphans: Vec::new(),
        };
        sd.restart().await;
        sd
    }
}

/// A running supervisord of a test's own; see the module documentation.
#[derive(Debug)]
pub struct SupervisordProcess {
    dir: TempDir,
    conf: PathBuf,
    child: Option<Child>,
    listen: Listen,
    auth: Option<(String, String)>,
    /// Programs left running by [`SupervisordProcess::kill9`], killed on drop.
    orphans: Vec<u32>,
}

impl SupervisordProcess {
    pub fn builder() -> SupervisordBuilder {
        SupervisordBuilder::default()
    }

    /// The url for rouse's `[supervisors.NAME] url`: `http://127.0.0.1:PORT/RPC2` or
    /// `unix:///DIR/s.sock`.
    pub fn url(&self) -> String {
        match &self.listen {
            Listen::Tcp(port) => format!("http://127.0.0.1:{port}/RPC2"),
            Listen::Unix(path) => format!("unix://{}", path.display()),
        }
    }

    /// A whole `[supervisors.NAME]` section for rouse: the url, the credentials if any, and
    /// `extra` lines (`poll_interval = "200ms"`, ...).
    pub fn rouse_section(&self, name: &str, extra: &str) -> String {
        let mut s = format!("[supervisors.{name}]\nurl = {:?}\n", self.url());
        if let Some((u, p)) = &self.auth {
            let _ = write!(s, "username = {u:?}\npassword = {p:?}\n");
        }
        s.push_str(extra);
        s.push('\n');
        s
    }

    /// The temporary directory holding the config, the logs and the socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// supervisord's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("supervisord.log")).unwrap_or_default()
    }

    /// supervisord's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Runs `supervisorctl -c CONF ARGS...`; its stdout and stderr.
    pub async fn supervisorctl(&self, args: &[&str]) -> String {
        let run = Command::new("supervisorctl")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = timeout(CALL_TIMEOUT, run)
            .await
            .unwrap_or_else(|_| panic!("supervisorctl {args:?} took over {CALL_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("cannot run supervisorctl: {e}"));
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        text
    }

    /// The pid supervisord reports for `program` (`None`: not running, unknown, or supervisord
    /// not answering).
    pub async fn pid_of(&self, program: &str) -> Option<u32> {
        let info = self.process_info(program).await?;
        member(&info, "pid", "int")
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|&p| p > 0)
    }

    /// `program`'s `statename` ("RUNNING", "STOPPED", ...), if supervisord answers.
    pub async fn statename(&self, program: &str) -> Option<String> {
        let info = self.process_info(program).await?;
        member(&info, "statename", "string")
    }

    async fn process_info(&self, program: &str) -> Option<String> {
        let spec = if program.contains(':') {
            program.to_owned()
        } else {
            format!("{program}:{program}")
        };
        let body = format!(
            "<?xml version=\"1.0\"?><methodCall><methodName>supervisor.getProcessInfo\
             </methodName><params><param><value><string>{spec}</string></value></param>\
             </params></methodCall>"
        );
        let answer = timeout(CALL_TIMEOUT, self.raw_call(&body))
            .await
            .ok()?
            .ok()?;
        (!answer.contains("<fault>")).then_some(answer)
    }

    /// Whether supervisord answers `getState` with RUNNING.
    pub async fn answers(&self) -> bool {
        let body = "<?xml version=\"1.0\"?><methodCall><methodName>supervisor.getState\
                    </methodName><params></params></methodCall>";
        matches!(
            timeout(Duration::from_secs(2), self.raw_call(body)).await,
            Ok(Ok(answer)) if answer.contains("<string>RUNNING</string>")
        )
    }

    /// One XML-RPC exchange over HTTP/1.0, independent of the code under test.
    async fn raw_call(&self, body: &str) -> std::io::Result<String> {
        let mut request = format!(
            "POST /RPC2 HTTP/1.0\r\nHost: localhost\r\nContent-Type: text/xml\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        if let Some((u, p)) = &self.auth {
            let _ = write!(
                request,
                "Authorization: Basic {}\r\n",
                base64(&format!("{u}:{p}"))
            );
        }
        request.push_str("\r\n");
        request.push_str(body);
        let mut answer = Vec::new();
        match &self.listen {
            Listen::Tcp(port) => {
                let mut s = TcpStream::connect(("127.0.0.1", *port)).await?;
                s.write_all(request.as_bytes()).await?;
                s.read_to_end(&mut answer).await?;
            }
            Listen::Unix(path) => {
                let mut s = UnixStream::connect(path).await?;
                s.write_all(request.as_bytes()).await?;
                s.read_to_end(&mut answer).await?;
            }
        }
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }

    /// The processes supervisord runs now (its children).
    pub fn children(&self) -> Vec<u32> {
        self.pid().map(children_of).unwrap_or_default()
    }

    /// SIGKILLs supervisord alone: its programs keep running, orphaned (and are killed when
    /// this is dropped, or by [`SupervisordProcess::kill_orphans`]).
    pub async fn kill9(&mut self) {
        self.orphans.extend(self.children());
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = timeout(CALL_TIMEOUT, child.wait()).await;
        }
    }

    /// SIGKILLs the programs an earlier [`SupervisordProcess::kill9`] left running.
    pub fn kill_orphans(&mut self) {
        for pid in self.orphans.drain(..) {
            kill_group(pid);
        }
    }

    /// Starts supervisord (again: same config, port or socket) and waits until it answers.
    /// Does nothing more if it is running.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            return;
        }
        let child = Command::new("supervisord")
            .arg("-c")
            .arg(&self.conf)
            .arg("-n")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run supervisord (apt-get install supervisor): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + ANSWER_WITHIN;
        loop {
            if self.answers().await {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                panic!("supervisord exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "supervisord did not answer within {ANSWER_WITHIN:?}:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM: supervisord stops its programs (stopwaitsecs) and exits; waits for that
    /// (bounded), then kills whatever is left.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let children = child.id().map(children_of).unwrap_or_default();
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if timeout(STOP_WITHIN, child.wait()).await.is_err() {
            let _ = child.start_kill();
            let _ = timeout(CALL_TIMEOUT, child.wait()).await;
        }
        for pid in children {
            kill_group(pid);
        }
    }
}

impl Drop for SupervisordProcess {
    fn drop(&mut self) {
        let mut pids = std::mem::take(&mut self.orphans);
        if let Some(mut child) = self.child.take() {
            pids.extend(child.id().map(children_of).unwrap_or_default());
            let _ = child.start_kill();
            let _ = child.try_wait();
        }
        for pid in pids {
            kill_group(pid);
        }
    }
}

/// SIGKILL to `pid`'s process group (supervisord puts each program in one of its own), and to
/// `pid` itself in case it is not a group leader.
fn kill_group(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// The live processes whose parent is `parent`, found through /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
                    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
                    let state = rest.next()?;
                    let ppid = rest.next()?.parse::<u32>().ok()?;
                    Some(ppid == parent && state != "Z" && state != "X")
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The text of `<value><TYPE>...</TYPE>` right after `<name>NAME</name>` in an XML-RPC answer.
fn member(xml: &str, name: &str, ty: &str) -> Option<String> {
    let after = &xml[xml.find(&format!("<name>{name}</name>"))?..];
    let open = format!("<{ty}>");
    let start = after.find(&open)? + open.len();
    let end = after[start..].find(&format!("</{ty}>"))? + start;
    // Only if that value is the member's own (no other member in between).
    (!after[..start].contains("</member>")).then(|| after[start..end].to_owned())
}

fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(""), "");
        assert_eq!(base64("f"), "Zg==");
        assert_eq!(base64("fo"), "Zm8=");
        assert_eq!(base64("foo"), "Zm9v");
        assert_eq!(base64("admin:secret"), "YWRtaW46c2VjcmV0");
    }

    #[test]
    fn members_are_read_from_their_own_value() {
        let xml = "<struct><member><name>pid</name><value><int>42</int></value></member>\
                   <member><name>statename</name><value><string>RUNNING</string></value>\
                   </member></struct>";
        assert_eq!(member(xml, "pid", "int").as_deref(), Some("42"));
        assert_eq!(
            member(xml, "statename", "string").as_deref(),
            Some("RUNNING")
        );
        assert_eq!(member(xml, "pid", "string"), None);
        assert_eq!(member(xml, "nope", "int"), None);
    }

    #[test]
    fn sections_and_quoting() {
        let p = Program::new("x", "sleep 10").set("startsecs", "0");
        let s = p.section();
        assert!(s.starts_with("[program:x]\ncommand=sleep 10\n"), "{s}");
        assert!(
            s.contains("startsecs=0\n") && !s.contains("startsecs=1"),
            "{s}"
        );
        assert!(s.contains("autostart=false\n") && s.contains("killasgroup=true\n"));
        assert_eq!(quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\"'\"'s'");
    }
}
