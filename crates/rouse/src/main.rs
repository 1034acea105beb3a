//! The `rouse` command: parse the command line, then hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hyper::body::Bytes;
use rouse::upgrade::Incoming;
use rouse::{Options, Rouse, client};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    name = "rouse",
    version,
    about = "A load-aware reverse proxy that starts its backends on demand"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until SIGTERM/SIGINT (graceful); SIGHUP reloads the config file; SIGUSR2 hands
    /// over to a new rouse process (as `rouse upgrade`).
    Run {
        /// The config file [default: $ROUSE_CONFIG, else ./rouse.toml, else
        /// /etc/rouse/rouse.toml].
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate the config file and print a summary of upstreams and servers.
    Check {
        /// The config file [default: $ROUSE_CONFIG, else ./rouse.toml, else
        /// /etc/rouse/rouse.toml].
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Also ask each `[supervisors.NAME]` supervisord whether it knows every program the
        /// file names (exit 1 if one does not, 2 if a supervisord cannot be asked).
        #[arg(long)]
        online: bool,
    },
    /// Show upstreams, servers, states, in-flight and held requests (from the admin API).
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the admin API's JSON as it is.
        #[arg(long)]
        json: bool,
        /// How many recent lifecycle events to list under the table.
        #[arg(long, default_value_t = 5)]
        events: usize,
    },
    /// Start a server: INDEX, or the next stopped one (through the admin API).
    Start(CommandArgs),
    /// Drain and stop a server: INDEX, or the last running one (through the admin API).
    Stop(CommandArgs),
    /// Make the running rouse re-read its config file (as SIGHUP), and show how it went:
    /// every error of an invalid file, or what was applied (through the admin API).
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
        /// The admin token, when `[admin] token` is set [default: the config file's].
        #[arg(long, env = "ROUSE_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Replace the running rouse with a new process of the binary now on disk, with no
    /// connection refused: the new one takes over the listening sockets and the embedded
    /// children, the old one finishes its requests and exits (through the admin API).
    Upgrade {
        #[command(flatten)]
        admin: AdminArgs,
        /// The admin token, when `[admin] token` is set [default: the config file's].
        #[arg(long, env = "ROUSE_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

/// Where the admin API is.
#[derive(clap::Args)]
struct AdminArgs {
    /// The admin API's HOST:PORT [default: `[admin] listen` of the config file, else
    /// 127.0.0.1:9900].
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    /// The config file whose `[admin]` section tells where the admin API is (and its token)
    /// [default: $ROUSE_CONFIG, else ./rouse.toml or /etc/rouse/rouse.toml when it exists].
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CommandArgs {
    /// The upstream's name.
    upstream: String,
    /// The server's index in the upstream (from 0); omitted: the next (start) or last (stop).
    index: Option<usize>,
    #[command(flatten)]
    admin: AdminArgs,
    /// The admin token, when `[admin] token` is set [default: the config file's].
    #[arg(long, env = "ROUSE_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Wait for the outcome: exit 0 once the server is ready (start) or stopped (stop), 1 if
    /// the start fails or the wait times out.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, e.g. "90s" [default: the upstream's start_timeout plus 5 s for
    /// a start, 60 s for a stop].
    #[arg(long, value_name = "DURATION", requires = "wait", value_parser = rouse_config::parse_duration)]
    timeout: Option<Duration>,
}

/// How much longer than the upstream's `start_timeout` a `start --wait` waits by default, so
/// that rouse's own verdict on a slow start (start-failed) arrives before the wait gives up.
const START_WAIT_MARGIN: Duration = Duration::from_secs(5);
/// `--wait`'s bound when no better one is known: a stop (a drain, bounded by
/// `shutdown_timeout`, 30 s by default, then the process's `stop_timeout`), or a start on a
/// rouse whose status does not say its `start_timeout`.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// Exit codes of SPEC.md.
const EXIT_BAD_CONFIG: u8 = 1;
const EXIT_RUNTIME: u8 = 2;
/// `rouse start|stop`: the admin API refused the command (unknown name, static upstream,
/// nothing to do, wrong token).
const EXIT_REFUSED: u8 = 1;
/// `rouse status|start|stop`: the admin API cannot be reached (or failed).
const EXIT_UNREACHABLE: u8 = 2;
/// `rouse start|stop --wait`: the start failed, or the wait timed out.
const EXIT_FAILED: u8 = 1;
/// `rouse check --online`: a program is unknown to its supervisord.
const EXIT_UNKNOWN_PROGRAM: u8 = 1;
/// `rouse check --online`: a supervisord cannot be asked.
const EXIT_SUPERVISOR_UNREACHABLE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config, online } => {
            let Some(located) = locate(config.as_deref()) else {
                return ExitCode::from(EXIT_BAD_CONFIG);
            };
            println!("config: {located}");
            check(&located.path, online)
        }
        Command::Status {
            admin,
            json,
            events,
        } => admin_client(|rt| rt.block_on(status(admin, json, events))),
        Command::Start(args) => admin_client(|rt| rt.block_on(command(args, "start"))),
        Command::Stop(args) => admin_client(|rt| rt.block_on(command(args, "stop"))),
        Command::Reload { admin, token } => admin_client(|rt| {
            let target = target(&admin, token);
            rt.block_on(post(&target, "/reload", "reload")).0
        }),
        Command::Upgrade { admin, token } => admin_client(|rt| {
            let target = target(&admin, token);
            rt.block_on(upgrade(&target))
        }),
        Command::Run { config: path } => {
            // First, while this process has one thread: taking them unsets LISTEN_FDS.
            let activation = rouse::activation::Activation::from_env();
            // Started by `rouse upgrade`: the old rouse's sockets come first, so that whatever
            // goes wrong next can be told to it.
            let incoming = match Incoming::from_env().transpose() {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("rouse: {e}");
                    return ExitCode::from(EXIT_RUNTIME);
                }
            };
            let Some(located) = locate(path.as_deref()) else {
                if let Some(i) = &incoming {
                    i.failed(&rouse::locate::NotFound.to_string());
                }
                return ExitCode::from(EXIT_BAD_CONFIG);
            };
            let path = located.path.clone();
            let config = match rouse::load::load(&path) {
                Ok(c) => c,
                Err(errors) => {
                    eprint!("{errors}");
                    if let Some(i) = &incoming {
                        i.failed(&format!("invalid config:\n{errors}"));
                    }
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            // Here rather than in `Rouse::start_with` alone: the new process of an upgrade (and
            // of a reload that adds [cluster]) takes over its listeners without it.
            if let Some(why) = rouse::cluster::unsupported(&config) {
                eprintln!("rouse: {}: {why}", path.display());
                if let Some(i) = &incoming {
                    i.failed(&why);
                }
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            if certificates(&config).is_none() {
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            rouse::logging::init(config.log.format);
            tracing::info!(file = %located, "configuration read");
            match run(path, config, incoming, activation) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("rouse: {e:#}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
    }
}

/// The config file to read (see `rouse::locate`), or `None` once the places tried are printed.
fn locate(flag: Option<&std::path::Path>) -> Option<rouse::locate::Located> {
    rouse::locate::locate(flag)
        .map_err(|e| eprintln!("rouse: {e}"))
        .ok()
}

/// The `[[proxy.tls]]` certificates, or `None` once every bad file has been printed (a bad
/// certificate is a bad config: exit 1).
fn certificates(config: &rouse_config::Config) -> Option<rouse::certs::Certificates> {
    match rouse::certs::load(config) {
        Ok(certs) => Some(certs),
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            None
        }
    }
}

/// `rouse check`: validates the file, prints its summary, and asks the supervisords with
/// `--online`.
fn check(path: &std::path::Path, online: bool) -> ExitCode {
    match rouse_config::load(path) {
        Ok(c) => {
            if let Some(why) = rouse::cluster::unsupported(&c) {
                eprintln!("{}: {why}", path.display());
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            let Some(certs) = certificates(&c) else {
                return ExitCode::from(EXIT_BAD_CONFIG);
            };
            for w in &certs.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}: ok", path.display());
            print!("{}", rouse_config::summary(&c));
            for (files, named) in c.proxy.tls.iter().zip(&certs.named) {
                println!(
                    "certificate  {}: {}",
                    files.cert.display(),
                    named.names.join(", ")
                );
            }
            if online {
                admin_client(|rt| rt.block_on(check_online(path, &c)))
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

/// Runs an admin API client command on a small runtime of its own.
fn admin_client(f: impl FnOnce(&tokio::runtime::Runtime) -> ExitCode) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => f(&rt),
        Err(e) => {
            eprintln!("rouse: cannot start the runtime: {e}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

fn target(admin: &AdminArgs, token: Option<String>) -> client::Target {
    let (target, warnings) =
        client::Target::resolve(admin.admin.as_deref(), admin.config.as_deref(), token);
    for w in warnings {
        eprintln!("rouse: {w}");
    }
    target
}

fn unreachable(e: &client::Unreachable, target: &client::Target) -> ExitCode {
    eprintln!("rouse: {e}");
    if let Some(hint) = &target.hint {
        eprintln!("rouse: {hint}");
    }
    ExitCode::from(EXIT_UNREACHABLE)
}

async fn status(admin: AdminArgs, json: bool, events: usize) -> ExitCode {
    let target = target(&admin, None);
    match client::status(&target.addr).await {
        Ok(s) if json => match serde_json::to_string_pretty(&s) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rouse: {e}");
                ExitCode::from(EXIT_UNREACHABLE)
            }
        },
        Ok(s) => {
            print!("{}", client::format_status(&s, events));
            ExitCode::SUCCESS
        }
        Err(e) => unreachable(&e, &target),
    }
}

/// `rouse check --online`: the file is valid; now ask the supervisords.
async fn check_online(file: &std::path::Path, config: &rouse_config::Config) -> ExitCode {
    // Each supervisord's own `timeout` bounds its question.
    let findings = rouse::online::check_programs(config, None).await;
    for (supervisor, asked) in &findings.asked {
        let url = config
            .supervisors
            .get(supervisor)
            .map(rouse::online::url)
            .unwrap_or_default();
        println!("supervisord {supervisor:?} ({url}): asked about {asked} program(s)");
    }
    for u in &findings.unknown {
        eprintln!("{}: {u}", file.display());
    }
    for u in &findings.unanswered {
        eprintln!("rouse: {u}");
    }
    // An unknown program is a fact about the file, whatever another supervisord did not say.
    if !findings.unknown.is_empty() {
        ExitCode::from(EXIT_UNKNOWN_PROGRAM)
    } else if !findings.unanswered.is_empty() {
        ExitCode::from(EXIT_SUPERVISOR_UNREACHABLE)
    } else {
        if findings.asked.is_empty() {
            println!("no supervisord to ask (embedded and static upstreams only)");
        } else {
            println!("every program is known");
        }
        ExitCode::SUCCESS
    }
}

async fn command(args: CommandArgs, op: &str) -> ExitCode {
    let target = target(&args.admin, args.token);
    let path = client::command_path(&args.upstream, args.index, op);
    if !args.wait {
        return post(&target, &path, op).await.0;
    }
    // Taken before the command, so that the events it causes are told from earlier ones.
    let before = match client::baseline(&target.addr).await {
        Ok(s) => s,
        Err(e) => return unreachable(&e, &target),
    };
    let started = tokio::time::Instant::now();
    let (code, body) = post(&target, &path, op).await;
    let Some(body) = body else {
        return code;
    };
    let Some(index) = client::server_of(&body).or(args.index) else {
        eprintln!("rouse: this rouse's answer does not say which server it chose; give INDEX");
        return ExitCode::from(EXIT_UNREACHABLE);
    };
    let goal = if op == "start" {
        client::Goal::Ready
    } else {
        client::Goal::Stopped
    };
    let timeout = args.timeout.unwrap_or_else(|| {
        let start_timeout = before
            .upstreams
            .iter()
            .find(|u| u.name == args.upstream)
            .and_then(|u| u.start_timeout_ms);
        match (goal, start_timeout) {
            (client::Goal::Ready, Some(ms)) => Duration::from_millis(ms) + START_WAIT_MARGIN,
            _ => DEFAULT_WAIT,
        }
    });
    let upstream = &args.upstream;
    let outcome =
        match client::wait_for(&target.addr, &before, upstream, index, goal, timeout).await {
            Ok(o) => o,
            Err(e) => return unreachable(&e, &target),
        };
    let took = started.elapsed().as_secs_f64();
    let word = match goal {
        client::Goal::Ready => "ready",
        client::Goal::Stopped => "stopped",
    };
    match outcome {
        client::Outcome::Reached { address } => {
            println!("{upstream} server {index} ({address}) {word} in {took:.1} s");
            ExitCode::SUCCESS
        }
        client::Outcome::Failed { address, why } => {
            eprintln!("rouse: {upstream} server {index} ({address}): {why}");
            ExitCode::from(EXIT_FAILED)
        }
        client::Outcome::TimedOut { address, state } => {
            eprintln!(
                "rouse: {upstream} server {index} ({address}) is still {state} after {took:.1} s; \
                 gave up waiting for it to be {word} (--timeout)"
            );
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// POSTs `path`; 202 is success (exit 0), a 4xx a refusal (exit 1), anything else exit 2.
/// The 202's body comes back for whoever goes on.
async fn post(target: &client::Target, path: &str, op: &str) -> (ExitCode, Option<Bytes>) {
    match client::request(
        &target.addr,
        hyper::Method::POST,
        path,
        target.token.as_deref(),
    )
    .await
    {
        Ok((code, body)) => {
            let message = client::message(&body);
            if code == hyper::StatusCode::ACCEPTED {
                println!("{message}");
                (ExitCode::SUCCESS, Some(body))
            } else if code.is_client_error() {
                eprintln!("rouse: {op} refused ({code}): {message}");
                (ExitCode::from(EXIT_REFUSED), None)
            } else {
                eprintln!("rouse: {op} failed ({code}): {message}");
                (ExitCode::from(EXIT_UNREACHABLE), None)
            }
        }
        Err(e) => (unreachable(&e, target), None),
    }
}

/// `rouse upgrade`: POST /upgrade, which answers once the new process serves or has failed.
async fn upgrade(target: &client::Target) -> ExitCode {
    match client::request(
        &target.addr,
        hyper::Method::POST,
        "/upgrade",
        target.token.as_deref(),
    )
    .await
    {
        Ok((code, body)) if code == hyper::StatusCode::ACCEPTED => {
            println!("{}", client::message(&body));
            ExitCode::SUCCESS
        }
        Ok((code, body)) => {
            eprintln!("rouse: upgrade failed ({code}): {}", client::message(&body));
            ExitCode::from(EXIT_RUNTIME)
        }
        Err(e) => unreachable(&e, target),
    }
}

fn run(
    path: PathBuf,
    config: rouse_config::Config,
    incoming: Option<Incoming>,
    activation: rouse::activation::Activation,
) -> anyhow::Result<()> {
    // Current-thread runtimes only: they spare the work-stealing scheduler's cross-thread
    // bookkeeping on every wake-up (measured: about 6% more requests/s than a one-worker
    // multi-thread runtime, more at two; docs/benchmarks.md). One thread runs everything on
    // this one; more run client connections on runtimes of their own, one per thread, and
    // the control plane, admin API and ACME here.
    let threads = match config.proxy.threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    };
    let started = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|rt| {
            let workers = (threads > 1)
                .then(|| rouse_proxy::Workers::start(threads))
                .transpose()?;
            Ok((rt, workers))
        });
    let (rt, workers) = match started {
        Ok(started) => started,
        Err(e) => {
            if let Some(i) = &incoming {
                i.failed(&format!("cannot start the runtime: {e}"));
            }
            return Err(e).context("cannot start the runtime");
        }
    };
    rt.block_on(async move {
        let launch = rouse::upgrade::Launch::current()
            .map(|l| l.reading(&path))
            .map_err(|e| {
                tracing::warn!("cannot tell which binary runs: `rouse upgrade` is off: {e}")
            })
            .ok();
        let options = Options {
            embedded_state_file: state_file(&path),
            child_log_dir: config.log.child_log_dir.clone(),
            launch,
            workers,
        };
        // Signals first: a SIGHUP or SIGUSR2 that comes while starting is not fatal.
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut usr2 = signal(SignalKind::user_defined2())?;
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let rouse = match incoming {
            None if !activation.is_empty() => activated(config, options, activation).await?,
            None => Rouse::start_with(config, options).await?,
            Some(incoming) => take_over(config, options, incoming).await?,
        };
        // systemd first (after an upgrade, it must follow this pid before the old one exits).
        rouse::notify::ready();
        if let Some(every) = rouse::notify::watchdog_interval() {
            // On this runtime, the control plane's: a stuck control plane misses its pings.
            tokio::spawn(rouse::notify::watchdog(every));
        }
        tracing::info!(listen = ?rouse.addrs(), pid = std::process::id(), "rouse is serving");
        // Reading the config was the start's burst of allocations; what it freed goes back.
        rouse_alloc::release_free_memory();
        let handed_over = rouse.handed_over();
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = handed_over.cancelled() => break,
                // Logged by the reload itself, success or not.
                _ = hup.recv() => { let _ = rouse.reload_file().await; }
                // Logged by the upgrade itself, success or not.
                _ = usr2.recv() => { let _ = rouse.upgrade().await; }
                // logrotate's postrotate: the access log's file, opened again.
                _ = usr1.recv() => rouse.reopen_logs(),
            }
        }
        if !handed_over.is_cancelled() {
            // Not once handed over: systemd would take it for the service (now the new
            // process) stopping.
            rouse::notify::stopping("stopping: finishing in-flight requests");
        }
        rouse.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The new process of `rouse upgrade`: listeners from the old one (binding new ones), then
/// its children, then serving; every failure is told to the old one, which keeps serving.
async fn take_over(
    config: rouse_config::Config,
    options: Options,
    mut incoming: Incoming,
) -> anyhow::Result<Rouse> {
    let bound = async {
        let listeners = rouse::bind_listeners_from(&config, &mut incoming.inherited).await?;
        let admin = rouse::bind_admin(&config, &mut incoming.inherited).await?;
        std::io::Result::Ok((listeners, admin))
    };
    let (listeners, admin) = match bound.await {
        Ok(b) => b,
        Err(e) => {
            incoming.failed(&e.to_string());
            return Err(e.into());
        }
    };
    // Waits for the old one to stop accepting and let go of its children.
    let (incoming, children) = tokio::task::spawn_blocking(move || {
        let children = incoming.prepared();
        (incoming, children)
    })
    .await?;
    let children = children.map_err(|e| anyhow::anyhow!(e))?;
    let rouse = Rouse::adopting(config, listeners, admin, options, children).await;
    // systemd first: it must follow this pid before the old one exits.
    rouse::notify::ready();
    incoming.ready();
    Ok(rouse)
}

/// Started by systemd with the sockets of a `.socket` unit: each one serves the listener of
/// its address, and the others are bound (see `rouse::activation`).
async fn activated(
    config: rouse_config::Config,
    options: Options,
    activation: rouse::activation::Activation,
) -> anyhow::Result<Rouse> {
    let passed = activation.describe();
    let mut inherited = activation
        .match_config(&config)
        .map_err(|errors| anyhow::anyhow!(errors.join("\n")))?;
    tracing::info!(sockets = ?passed, "listening on the sockets systemd passed");
    let listeners = rouse::bind_listeners_from(&config, &mut inherited).await?;
    let admin = rouse::bind_admin(&config, &mut inherited).await?;
    Ok(Rouse::with_listeners(config, listeners, admin, options).await)
}

/// Where the embedded supervisor keeps its process groups: one file per config file, so two
/// rouse instances with different configs never clean up each other's children, in a
/// directory only rouse's user can write (`$XDG_RUNTIME_DIR/rouse`, `/run/rouse` for root,
/// else `$TMPDIR/rouse-UID`; see rouse_supervisor::default_state_dir).
fn state_file(config: &std::path::Path) -> Option<PathBuf> {
    let canonical = std::fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf());
    // FNV-1a: stable across Rust releases, unlike std's hasher, so a newer rouse still finds
    // the file an older one left.
    let hash = canonical
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
        });
    let dir = rouse_supervisor::embedded::default_state_dir();
    if dir.is_none() {
        tracing::warn!(
            "no directory for the embedded supervisor's state file: children left by a rouse that gets killed will not be cleaned up by the next one"
        );
    }
    Some(dir?.join(format!("embedded-{hash:016x}.pgids")))
}
