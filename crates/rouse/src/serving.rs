//! The proxy's and the admin API's serving tasks. An upgrade stops their accepting; should the
//! new process fail after that, they are started again on the same sockets, so the old rouse
//! goes on serving.

use std::sync::{Arc, Mutex, MutexGuard};

use rouse_admin::AdminState;
use rouse_proxy::{Proxy, Workers};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

type Tasks = Mutex<Vec<(CancellationToken, JoinHandle<()>)>>;

pub(crate) struct Serving {
    proxy: Arc<Proxy>,
    workers: Option<Arc<Workers>>,
    admin: Mutex<Option<AdminState>>,
    proxy_tasks: Tasks,
    admin_tasks: Tasks,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Serving {
    pub fn new(proxy: Arc<Proxy>, workers: Option<Arc<Workers>>) -> Arc<Serving> {
        Arc::new(Serving {
            proxy,
            workers,
            admin: Mutex::new(None),
            proxy_tasks: Mutex::new(Vec::new()),
            admin_tasks: Mutex::new(Vec::new()),
        })
    }

    /// What the admin API serves (set once the hooks that need `Serving` exist).
    pub fn set_admin(&self, state: AdminState) {
        *lock(&self.admin) = Some(state);
    }

    /// Serves clients on `listeners`, and the admin API on `admin`.
    pub fn serve(&self, listeners: Vec<rouse_proxy::Listener>, admin: Option<TcpListener>) {
        let stop = CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(rouse_proxy::serve_on(
            Arc::clone(&self.proxy),
            listeners,
            async move { until.cancelled().await },
            self.workers.clone(),
        ));
        lock(&self.proxy_tasks).push((stop, task));
        let state = lock(&self.admin).clone();
        if let (Some(listener), Some(state)) = (admin, state) {
            let stop = CancellationToken::new();
            let until = stop.clone();
            let task = tokio::spawn(rouse_admin::serve(listener, state, async move {
                until.cancelled().await
            }));
            lock(&self.admin_tasks).push((stop, task));
        }
    }

    /// Stops accepting, proxy and admin API; what is in flight finishes.
    pub fn stop_accepting(&self) {
        for (stop, _) in lock(&self.proxy_tasks)
            .iter()
            .chain(lock(&self.admin_tasks).iter())
        {
            stop.cancel();
        }
    }

    /// The proxy stops accepting and drains (bounded by `shutdown_timeout`), then the admin
    /// API stops.
    pub async fn shutdown(&self) {
        for tasks in [&self.proxy_tasks, &self.admin_tasks] {
            let taken = std::mem::take(&mut *lock(tasks));
            for (stop, _) in &taken {
                stop.cancel();
            }
            for (_, task) in taken {
                let _ = task.await;
            }
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}
