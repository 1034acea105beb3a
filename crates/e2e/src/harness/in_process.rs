//! The test backend on a tokio task.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, BackendConfig, ServeOutcome, Stats};

/// A backend served on a task of the current runtime. Dropping it stops the server at once
/// (connections are cut, as [`InProcessBackend::kill`] does), in the background.
#[derive(Debug)]
pub struct InProcessBackend {
    backend: Backend,
    addr: SocketAddr,
    graceful: CancellationToken,
    immediate: CancellationToken,
    task: Option<JoinHandle<ServeOutcome>>,
}

/// A backend with this id on 127.0.0.1, on a port picked by the OS.
pub async fn spawn_in_process(id: &str) -> InProcessBackend {
    spawn_in_process_with(BackendConfig::new(id)).await
}

/// A backend with this config on 127.0.0.1, on a port picked by the OS.
///
/// With [`BackendConfig::exit_after_requests`] the server stops after that many requests, as
/// the process would (minus the exit): see [`InProcessBackend::wait_stopped`].
pub async fn spawn_in_process_with(config: BackendConfig) -> InProcessBackend {
    spawn_in_process_at(config, (Ipv4Addr::LOCALHOST, 0).into()).await
}

/// A backend with this config on `listen`; panics if it cannot bind there.
pub async fn spawn_in_process_at(config: BackendConfig, listen: SocketAddr) -> InProcessBackend {
    let backend = Backend::new(config).unwrap_or_else(|e| panic!("{e}"));
    let listener = TcpListener::bind(listen)
        .await
        .unwrap_or_else(|e| panic!("cannot bind the in-process backend to {listen}: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read the in-process backend's address: {e}"));
    let graceful = CancellationToken::new();
    let immediate = CancellationToken::new();
    let task = tokio::spawn({
        let backend = backend.clone();
        let graceful = graceful.clone();
        let immediate = immediate.clone();
        async move { backend.serve(listener, graceful, immediate).await }
    });
    InProcessBackend {
        backend,
        addr,
        graceful,
        immediate,
        task: Some(task),
    }
}

impl InProcessBackend {
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
        self.backend.id()
    }

    /// Its counters, read directly (no request, so nothing is counted).
    pub fn stats(&self) -> Stats {
        self.backend.stats()
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), and returns once the
    /// server is down.
    pub async fn shutdown(mut self) -> ServeOutcome {
        self.graceful.cancel();
        self.join().await
    }

    /// Stops at once, cutting every connection, like a crash; returns once the port is closed.
    pub async fn kill(mut self) -> ServeOutcome {
        self.immediate.cancel();
        self.join().await
    }

    /// Waits for the server to stop by itself (the request limit) and says why it stopped.
    pub async fn wait_stopped(mut self) -> ServeOutcome {
        self.join().await
    }

    async fn join(&mut self) -> ServeOutcome {
        match self.task.take() {
            Some(task) => task
                .await
                .unwrap_or_else(|e| panic!("in-process backend task failed: {e}")),
            None => ServeOutcome::Shutdown,
        }
    }
}

impl Drop for InProcessBackend {
    fn drop(&mut self) {
        self.immediate.cancel();
    }
}
