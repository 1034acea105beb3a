//! The HTTPS client that talks to the CA: rouse's ring provider (never a process default), the
//! roots of `ca_file` or else the system's, and every request bounded.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use super::Error;

/// A TCP connect to the CA.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One request to the CA, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type Hyper = Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// instant-acme's client with a bound on each request.
struct Bounded(Hyper);

impl HttpClient for Bounded {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let uri = req.uri().clone();
        let fut = HttpClient::request(&self.0, req);
        Box::pin(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
                Ok(result) => result,
                Err(_) => Err(instant_acme::Error::Other(
                    format!("no answer from {uri} within {REQUEST_TIMEOUT:?}").into(),
                )),
            }
        })
    }
}

/// `ca_file`'s certificates as the only roots, or the system's when there is none. Plain
/// `http://` is possible only because validation allows it to loopback alone.
pub fn http_client(ca_file: Option<&Path>) -> Result<Box<dyn HttpClient>, Error> {
    let provider = crate::provider();
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| Error::Invalid(format!("ca_file {}: {e}", path.display())))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| Error::Invalid(format!("ca_file {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::Invalid(format!("ca_file {}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(Error::Invalid(format!(
                    "ca_file {}: no certificate in it",
                    path.display()
                )));
            }
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::Invalid(format!("TLS: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder.with_tls_config(config)
        }
        None => builder
            .with_provider_and_native_roots(provider)
            .map_err(|e| Error::Invalid(format!("the system's CA roots: {e}")))?,
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = builder.https_or_http().enable_http1().wrap_connector(http);
    let client: Hyper = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    Ok(Box::new(Bounded(client)))
}
