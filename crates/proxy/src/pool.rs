//! Keep-alive connections to one server.
//!
//! Hand-written rather than hyper-util's legacy `Client` because the proxy needs what that
//! client hides: a connect failure must hand the request back (so it can be retried on another
//! server with its streamed body untouched), `try_send_request` tells whether a pooled connection
//! died before anything was written, and connections belong to a server, not to a URI.

use std::sync::Mutex;
use std::time::Duration;

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::connect::Target;

pub type Sender = SendRequest<crate::request_body::RequestBody>;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
    #[error("handshake with {0}: {1}")]
    Handshake(String, hyper::Error),
}

#[derive(Debug)]
pub struct Pool {
    target: Target,
    idle: Mutex<Vec<(Sender, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(target: Target, max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            target,
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
        }
    }

    /// The most recently used live idle connection, if any (LIFO keeps the hot ones warm and
    /// lets the cold ones expire).
    pub fn checkout(&self, now: Instant) -> Option<Sender> {
        let mut idle = self.lock();
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && now.saturating_duration_since(since) < self.idle_timeout {
                return Some(sender);
            }
        }
        None
    }

    /// Gives a connection back after its response ended cleanly.
    pub fn put(&self, sender: Sender, now: Instant) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() >= self.max_idle {
            // The oldest is the least likely to be needed again.
            idle.remove(0);
        }
        idle.push((sender, now));
    }

    /// Drops idle connections older than the idle timeout (closing their sockets).
    pub fn evict_expired(&self, now: Instant) {
        self.lock().retain(|(s, since)| {
            !s.is_closed() && now.saturating_duration_since(*since) < self.idle_timeout
        });
    }

    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }

    pub async fn connect(&self, timeout: Duration) -> Result<Sender, ConnectError> {
        let stream = self.target.connect(timeout).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ConnectError::Handshake(self.target.to_string(), e))?;
        tokio::spawn(async move {
            // Errors here are the server closing or resetting; the request side sees them too.
            if let Err(e) = conn.with_upgrades().await {
                tracing::trace!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Sender, Instant)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}
