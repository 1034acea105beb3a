//! Reading the `[[proxy.tls]]` files of a config: at `rouse check`, at start and on every
//! reload, always whole, so that a bad file changes nothing.

use std::time::SystemTime;

use rouse_config::Config;
pub use rouse_tls::load::Certificates;
use rouse_tls::load::{Files, load_all};

/// Every certificate of `config`, with warnings (expired, no DNS name); or every error, one
/// line each, naming its file.
pub fn load(config: &Config) -> Result<Certificates, Vec<String>> {
    let files: Vec<Files> = config
        .proxy
        .tls
        .iter()
        .map(|t| Files {
            cert: t.cert.clone(),
            key: t.key.clone(),
        })
        .collect();
    load_all(&files, SystemTime::now())
        .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}
