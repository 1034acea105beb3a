//! Automatic certificates: `[proxy.acme]` over HTTP-01.
//!
//! [`Acme::start`] installs the certificate stored in `dir` when it is still valid, so it is
//! served from the first handshake, then runs a loop ([`task`]) that orders a new one when
//! there is none or it is due (`renew_before` ahead of expiry), answering the CA's HTTP-01
//! fetches through [`Challenges`] (the plain listeners serve them), writes it to `dir` and
//! installs it in the [`CertStore`]. The old certificate is served until then; a failure is
//! logged and tried again after 1 min, doubling to 1 h. [`Acme::stop`] (or a drop) ends it.

mod client;
mod files;
mod order;
mod policy;
mod task;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rouse_config::AcmeConfig;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::challenge::Challenges;
use crate::store::CertStore;
use files::Files;
pub use policy::{Backoff, CHECK_INTERVAL, RETRY_FIRST, RETRY_MAX, renew_at};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Acme(#[from] instant_acme::Error),
    #[error("key or CSR: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What the ACME loop has done so far (for tests, logs and status pages).
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Times the loop looked at the certificate (at start, then at each wake-up).
    pub checks: u64,
    /// Orders started (each attempt counts).
    pub orders: u64,
    /// Certificates obtained and installed.
    pub issued: u64,
    /// Failed attempts since the last success.
    pub failures: u64,
    pub last_error: Option<String>,
    /// The wait before the next attempt, after a failure.
    pub retry_in: Option<Duration>,
    /// When the served certificate is due for renewal.
    pub renew_at: Option<SystemTime>,
    /// A certificate from `dir` was installed at start.
    pub loaded: bool,
}

/// The running ACME loop of one `[proxy.acme]`; stopped by [`Acme::shutdown`] or on drop.
pub struct Acme {
    status: Arc<Mutex<Status>>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Acme {
    /// Installs the stored certificate if it is still valid, then starts the loop on the
    /// current tokio runtime.
    pub fn start(config: &AcmeConfig, challenges: Arc<Challenges>, store: Arc<CertStore>) -> Acme {
        let files = Files::new(&config.dir, &config.domains, &config.directory);
        let what = config.domains.join(", ");
        let mut status = Status::default();
        let mut due = None;
        match files::load(&files, &config.domains) {
            Ok(Some(stored)) if stored.not_after > SystemTime::now() => {
                let at = renew_at(stored.not_before, stored.not_after, config.renew_before);
                tracing::info!(domains = %what, cert = %files.cert.display(), "acme: serving the stored certificate");
                store.set_acme(stored.named);
                status.loaded = true;
                status.renew_at = Some(at);
                due = Some(at);
            }
            Ok(Some(_)) => {
                tracing::warn!(domains = %what, cert = %files.cert.display(), "acme: the stored certificate has expired; ordering a new one");
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(domains = %what, %error, "acme: the stored certificate cannot be used; ordering a new one");
            }
        }
        let status = Arc::new(Mutex::new(status));
        let wake = Arc::new(Notify::new());
        let cancel = CancellationToken::new();
        let looped = task::Loop {
            issuer: Issuer {
                config: config.clone(),
                files,
                challenges,
                store,
            },
            renew_before: config.renew_before,
            due,
            backoff: Backoff::default(),
            status: Arc::clone(&status),
            wake: Arc::clone(&wake),
            cancel: cancel.clone(),
            now: SystemTime::now,
            what,
        };
        Acme {
            status,
            wake,
            cancel,
            task: Mutex::new(Some(tokio::spawn(looped.run()))),
        }
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Looks at the certificate now rather than at the next planned check (on reload): orders
    /// if it is due, or retries now after a failure.
    pub fn check_now(&self) {
        self.wake.notify_one();
    }

    /// Stops the loop, abandoning an order in progress (its challenges are withdrawn), and
    /// waits for it to end.
    pub async fn stop(&self) {
        self.cancel.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for Acme {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The real [`task::Issue`]: order, save, install.
struct Issuer {
    config: AcmeConfig,
    files: Files,
    challenges: Arc<Challenges>,
    store: Arc<CertStore>,
}

impl task::Issue for Issuer {
    async fn issue(&self) -> Result<(SystemTime, SystemTime), String> {
        let issued = order::order(&self.config, &self.files, &self.challenges)
            .await
            .map_err(|e| format!("{}: {}", self.config.directory, with_causes(&e)))?;
        let stored = files::parse(
            issued.chain_pem.as_bytes(),
            issued.key_pem.as_bytes(),
            &self.config.domains,
        )
        .map_err(|why| format!("the CA's certificate: {why}"))?;
        if let Err(error) = files::save(
            &self.files,
            issued.chain_pem.as_bytes(),
            issued.key_pem.as_bytes(),
        ) {
            // Served anyway: a full disk must not keep a valid certificate from clients. The
            // next start orders again.
            tracing::warn!(%error, "acme: could not store the new certificate; serving it anyway");
        }
        let validity = (stored.not_before, stored.not_after);
        self.store.set_acme(stored.named);
        Ok(validity)
    }
}

/// `error: cause: cause…`: an HTTP client's own message ("client error (Connect)") says little
/// without what is underneath ("Connection refused").
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}
