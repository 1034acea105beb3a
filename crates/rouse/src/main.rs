//! The `rouse` command: parse the command line, then hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rouse::{Options, Rouse};
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
    /// Serve until SIGTERM/SIGINT (graceful); SIGHUP reloads the config file.
    Run {
        #[arg(short, long, default_value = "rouse.toml")]
        config: PathBuf,
    },
    /// Validate the config file and print a summary of upstreams and servers.
    Check {
        #[arg(short, long, default_value = "rouse.toml")]
        config: PathBuf,
    },
}

/// Exit codes of SPEC.md.
const EXIT_BAD_CONFIG: u8 = 1;
const EXIT_RUNTIME: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match rouse_config::load(&config) {
            Ok(c) => {
                println!("{}: ok", config.display());
                print!("{}", rouse_config::summary(&c));
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprint!("{errors}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::Run { config: path } => {
            let config = match rouse_config::load(&path) {
                Ok(c) => c,
                Err(errors) => {
                    eprint!("{errors}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            rouse::logging::init(config.log.format);
            match run(path, config) {
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

fn run(path: PathBuf, config: rouse_config::Config) -> anyhow::Result<()> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if config.proxy.threads > 0 {
        rt.worker_threads(config.proxy.threads);
    }
    let rt = rt
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        let options = Options {
            embedded_state_file: Some(state_file(&path)),
            child_log_dir: config.log.child_log_dir.clone(),
        };
        let rouse = Rouse::start_with(config, options).await?;
        tracing::info!(listen = ?rouse.addrs(), "rouse is serving");
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => match rouse_config::load(&path) {
                    Ok(new) => match rouse.reload(&new) {
                        Ok(()) => tracing::info!(file = %path.display(), "configuration reloaded"),
                        Err(e) => tracing::error!("reload refused, keeping the running configuration: {e}"),
                    },
                    Err(errors) => {
                        for e in &errors.errors {
                            tracing::error!("reload refused, keeping the running configuration: {e}");
                        }
                    }
                },
            }
        }
        rouse.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Where the embedded supervisor keeps its process groups: one file per config file, so two
/// rouse instances with different configs never clean up each other's children.
fn state_file(config: &std::path::Path) -> PathBuf {
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
    std::env::temp_dir()
        .join("rouse")
        .join(format!("embedded-{hash:016x}.pgids"))
}
