//! TLS for rouse, on rustls with the ring provider (one provider in the whole process: rustls
//! refuses to guess between two).
//!
//! - [`store::CertStore`] answers each handshake with the certificate whose names match the
//!   client's SNI: those read from `[[proxy.tls]]` files (replaced whole on reload) and those
//!   obtained by ACME (replaced one by one as they are renewed). Swapping is atomic, so a
//!   handshake sees the old set or the new one, and open connections keep theirs.
//! - [`challenge::Challenges`] holds the HTTP-01 answers ACME is waiting to have fetched; the
//!   plain listeners answer `/.well-known/acme-challenge/TOKEN` from it before routing.
#![forbid(unsafe_code)]

pub mod acme;
pub mod challenge;
pub mod store;

/// The crypto provider every rustls configuration of rouse is built with.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
