//! rouse's configuration.
//!
//! `rouse.toml -> file::FileConfig (serde, spans kept) -> validate -> model::Config`.
//! Every error found is reported, each as `FILE:LINE:COL: message`.
#![forbid(unsafe_code)]

mod duration;
mod error;
mod fields;
mod file;
pub mod model;
mod position;
mod read;
mod size;
mod summary;
mod validate;
pub mod values;

use std::path::Path;

pub use duration::{format_duration, parse_duration};
pub use error::{ConfigError, ConfigErrors};
pub use model::*;
pub use size::{format_size, parse_size};
pub use summary::summary;

use error::Diagnostics;
use position::LineIndex;

/// Parses and validates a configuration. `source_name` is what errors are reported against,
/// e.g. "rouse.toml"; `Config::source` is left empty (see `load`).
pub fn parse(source_name: &str, text: &str) -> Result<Config, ConfigErrors> {
    let mut diagnostics = Diagnostics::default();
    let config = read::read(text, &mut diagnostics).map(|file| {
        let lines = LineIndex::new(text);
        let mut cx = validate::Context {
            diagnostics: &mut diagnostics,
            lines: &lines,
        };
        validate::validate(&file, &mut cx)
    });
    match config {
        Some(config) if diagnostics.is_empty() => Ok(config),
        _ => Err(diagnostics.into_errors(source_name, text)),
    }
}

/// Reads `path` and parses it, reporting errors against the path as given.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigErrors::whole_file(&name, format!("cannot read: {e}")))?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            // Point at the first bad byte: the valid part before it is text we can count in.
            let valid = e.utf8_error().valid_up_to();
            let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
            let mut diagnostics = Diagnostics::default();
            diagnostics.error(valid..valid, "not valid UTF-8 (TOML files must be UTF-8)");
            return Err(diagnostics.into_errors(&name, &prefix));
        }
    };
    let mut config = parse(&name, &text)?;
    if let Some(acme) = &mut config.proxy.acme {
        acme.resolve_paths(path);
    }
    config.source = Some(path.to_path_buf());
    Ok(config)
}
