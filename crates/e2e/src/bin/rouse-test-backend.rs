//! `rouse-test-backend`: the backend that rouse's end-to-end tests proxy to. The server
//! itself is [`rouse_e2e::backend`]; this is its command line.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rouse_e2e::backend::listener::{Listener, bind_unix, tls_acceptor};
use rouse_e2e::{Backend, BackendConfig, ServeOutcome};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A test HTTP backend (HTTP/1.1, h2c, WebSocket) for rouse's end-to-end tests.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Name returned by `GET /` and in `x-backend-id`.
    #[arg(long, default_value = "backend")]
    id: String,
    /// Milliseconds to wait before binding, to act like a slow-starting app.
    #[arg(long, value_name = "DURATION_MS")]
    delay_listen: Option<u64>,
    /// Exit with code 1 after this many requests, to act like a crash.
    #[arg(long, value_name = "N")]
    exit_after_requests: Option<u64>,
    /// Milliseconds added to every request (but /stats), to act like a slow server.
    #[arg(long, value_name = "DURATION_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Serve at most N requests at once; the rest queue inside the backend, as with gunicorn's
    /// N sync workers.
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// N sync workers, as gunicorn's: at most N requests at once (as --concurrency), and each
    /// worker reads its request's whole body before answering.
    #[arg(long, value_name = "N", conflicts_with = "concurrency")]
    workers: Option<usize>,
    /// Listen on a unix socket at this path instead of --listen (a socket file left there by
    /// a previous process is replaced, as app servers do).
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Write the bound port (decimal, newline-terminated) to this file once listening.
    #[arg(long, value_name = "PATH")]
    port_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(ServeOutcome::Shutdown) => ExitCode::SUCCESS,
        Ok(ServeOutcome::RequestLimitReached) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rouse-test-backend: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<ServeOutcome, Box<dyn std::error::Error>> {
    let mut config = BackendConfig::new(cli.id).latency(Duration::from_millis(cli.latency_ms));
    config.exit_after_requests = cli.exit_after_requests;
    config.concurrency = cli.concurrency;
    if let Some(n) = cli.workers {
        config = config.workers(n);
    }
    let backend = Backend::new(config)?;
    let graceful = CancellationToken::new();
    watch_signals(graceful.clone())?;

    if let Some(ms) = cli.delay_listen {
        // A slow starter can still be stopped while it is starting.
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => {}
            () = graceful.cancelled() => return Ok(ServeOutcome::Shutdown),
        }
    }

    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let (listener, shown): (Listener, String) = match &cli.unix {
        Some(path) => {
            let listener = bind_unix(path)
                .map_err(|e| format!("cannot listen on unix:{}: {e}", path.display()))?;
            (listener.into(), format!("unix:{}", path.display()))
        }
        None => {
            let listener = TcpListener::bind(cli.listen)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
            let addr = listener.local_addr()?;
            if let Some(path) = &cli.port_file {
                write_port_file(path, addr.port())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            (listener.into(), addr.to_string())
        }
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening {shown}")?;
    stdout.flush()?;
    drop(stdout);

    Ok(backend
        .serve_on(listener, tls, graceful, CancellationToken::new())
        .await)
}

fn watch_signals(graceful: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        graceful.cancel();
    });
    Ok(())
}

/// Writes through a temporary file and a rename, so a reader polling for the file never sees
/// it empty or half-written.
fn write_port_file(path: &Path, port: u16) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{port}\n"))?;
    std::fs::rename(&tmp, path)
}
