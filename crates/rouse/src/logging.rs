//! Log output: readable text by default, JSON when `[log] format = "json"`; `RUST_LOG` filters.

use std::io::IsTerminal;

use rouse_config::LogFormat;
use tracing_subscriber::EnvFilter;

/// rustls warns of what clients send (an IP address as SNI, as `curl https://10.0.0.5/` and
/// wrk do), once per handshake: the client's doing, not the operator's, so rouse shows
/// rustls's errors only unless `RUST_LOG` names rustls itself.
const RUSTLS_QUIET: &str = "rustls=error";

pub fn init(format: LogFormat) {
    let env = std::env::var(EnvFilter::DEFAULT_ENV).unwrap_or_default();
    let mut filter = EnvFilter::try_new(&env).unwrap_or_else(|_| EnvFilter::new("info"));
    if env.trim().is_empty() {
        filter = EnvFilter::new("info");
    }
    if !env.contains("rustls")
        && let Ok(directive) = RUSTLS_QUIET.parse()
    {
        filter = filter.add_directive(directive);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber; that is fine.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
