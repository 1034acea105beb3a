//! A supervisord driver that stops nothing once this rouse has handed over to a new one
//! (`rouse upgrade`): the old process may drain for minutes (an open WebSocket, up to
//! `shutdown_timeout`), and its control plane, still deciding for its own requests, must not
//! idle-stop a program the new process serves through. Starts still go through: one the old
//! process asks for is adopted by the new one.

use std::sync::Arc;

use rouse_supervisor::{BoxFuture, ProcessInfo, Supervisor, SupervisorError};
use tokio_util::sync::CancellationToken;

pub(crate) struct StopsUntilHandover {
    inner: Arc<dyn Supervisor>,
    handed_over: CancellationToken,
}

impl StopsUntilHandover {
    pub fn wrap(inner: Arc<dyn Supervisor>, handed_over: CancellationToken) -> Arc<dyn Supervisor> {
        Arc::new(StopsUntilHandover { inner, handed_over })
    }
}

impl Supervisor for StopsUntilHandover {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn start<'a>(&'a self, program: &'a str) -> BoxFuture<'a, Result<(), SupervisorError>> {
        self.inner.start(program)
    }

    fn stop<'a>(&'a self, program: &'a str) -> BoxFuture<'a, Result<(), SupervisorError>> {
        if self.handed_over.is_cancelled() {
            tracing::info!(
                supervisor = self.inner.name(),
                program,
                "not stopped: it serves the rouse that took over"
            );
            return Box::pin(std::future::ready(Ok(())));
        }
        self.inner.stop(program)
    }

    fn observe(&self) -> BoxFuture<'_, Result<Vec<ProcessInfo>, SupervisorError>> {
        self.inner.observe()
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ProcessInfo> {
        self.inner.subscribe()
    }

    fn manage(&self, servers: &[&rouse_config::ServerConfig]) {
        self.inner.manage(servers);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Default)]
    struct Counting {
        starts: AtomicUsize,
        stops: AtomicUsize,
    }

    impl Supervisor for Counting {
        fn name(&self) -> &str {
            "main"
        }
        fn start<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), SupervisorError>> {
            self.starts.fetch_add(1, Ordering::SeqCst);
            Box::pin(std::future::ready(Ok(())))
        }
        fn stop<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), SupervisorError>> {
            self.stops.fetch_add(1, Ordering::SeqCst);
            Box::pin(std::future::ready(Ok(())))
        }
        fn observe(&self) -> BoxFuture<'_, Result<Vec<ProcessInfo>, SupervisorError>> {
            Box::pin(std::future::ready(Ok(Vec::new())))
        }
        fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ProcessInfo> {
            tokio::sync::broadcast::channel(1).1
        }
        fn manage(&self, _: &[&rouse_config::ServerConfig]) {}
    }

    #[tokio::test]
    async fn stops_pass_until_the_handover_and_starts_always() {
        let inner = Arc::new(Counting::default());
        let handed = CancellationToken::new();
        let guarded = StopsUntilHandover::wrap(inner.clone(), handed.clone());
        guarded.stop("web").await.unwrap();
        handed.cancel();
        guarded.stop("web").await.unwrap();
        guarded.start("web").await.unwrap();
        assert_eq!(inner.stops.load(Ordering::SeqCst), 1);
        assert_eq!(inner.starts.load(Ordering::SeqCst), 1);
        assert_eq!(guarded.name(), "main");
    }
}
