//! HTTP-01 answers waiting to be fetched by the ACME server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The path prefix the ACME server fetches (RFC 8555 §8.3).
pub const PREFIX: &str = "/.well-known/acme-challenge/";

/// token → key authorization, for the orders in progress.
#[derive(Debug, Default)]
pub struct Challenges {
    pending: Mutex<HashMap<String, String>>,
}

impl Challenges {
    pub fn new() -> Arc<Challenges> {
        Arc::new(Challenges::default())
    }

    pub fn insert(&self, token: String, key_authorization: String) {
        self.lock().insert(token, key_authorization);
    }

    pub fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    /// The body to answer `GET path` with, when `path` is a pending challenge's.
    pub fn answer(&self, path: impl AsRef<[u8]>) -> Option<String> {
        let token = path.as_ref().strip_prefix(PREFIX.as_bytes())?;
        self.lock().get(std::str::from_utf8(token).ok()?).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pending_tokens_under_the_prefix_are_answered() {
        let c = Challenges::new();
        c.insert("tok".into(), "tok.thumb".into());
        assert_eq!(
            c.answer("/.well-known/acme-challenge/tok").as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(c.answer("/.well-known/acme-challenge/other"), None);
        assert_eq!(c.answer("/tok"), None);
        c.remove("tok");
        assert_eq!(c.answer("/.well-known/acme-challenge/tok"), None);
    }
}
