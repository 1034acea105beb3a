//! `rouse-test-grpc`: the gRPC service ([`rouse_e2e::grpc`]) that rouse's h2 upstream tests
//! put behind rouse, served over h2c. Stops on SIGTERM (the default action), as a supervised
//! service would.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;

/// The rouse.test.Test gRPC service (Hello, Count), h2c only.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let listener = match TcpListener::bind(cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rouse-test-grpc: cannot listen on {}: {e}", cli.listen);
            return ExitCode::from(2);
        }
    };
    if let Ok(addr) = listener.local_addr() {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening {addr}");
        let _ = stdout.flush();
    }
    rouse_e2e::grpc::serve(listener).await;
    ExitCode::SUCCESS
}
