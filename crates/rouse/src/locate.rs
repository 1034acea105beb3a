//! Which config file a command reads: `-c FILE`, else `$ROUSE_CONFIG`, else `./rouse.toml`,
//! else `/etc/rouse/rouse.toml` (SPEC.md). The first two are the operator's explicit choice
//! and are used as given (a missing file is then an error that names it, never a silent fall
//! through to another file); the last two are used when they exist.

use std::fmt;
use std::path::{Path, PathBuf};

/// The variable that names the config file when `-c` is not given.
pub const ENV_CONFIG: &str = "ROUSE_CONFIG";
/// Looked for in the working directory.
pub const LOCAL: &str = "rouse.toml";
/// Where the Debian package installs the config.
pub const SYSTEM: &str = "/etc/rouse/rouse.toml";

/// Where the config file was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    Local,
    System,
}

/// The config file a command reads, and why that one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub path: PathBuf,
    pub source: Source,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.source {
            Source::Flag => "-c",
            Source::Env => "$ROUSE_CONFIG",
            Source::Local => "found in the working directory",
            Source::System => "found in /etc/rouse",
        };
        write!(f, "{} ({why})", self.path.display())
    }
}

/// No config file anywhere rouse looks.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "no config file: tried -c FILE (not given), ${ENV_CONFIG} (not set), ./{LOCAL} (not found), {SYSTEM} (not found)"
)]
pub struct NotFound;

/// The config file to read, by the order above.
pub fn locate(flag: Option<&Path>) -> Result<Located, NotFound> {
    locate_in(flag, std::env::var_os(ENV_CONFIG), Path::new(SYSTEM))
}

fn locate_in(
    flag: Option<&Path>,
    env: Option<std::ffi::OsString>,
    system: &Path,
) -> Result<Located, NotFound> {
    let found = |path: PathBuf, source| Ok(Located { path, source });
    if let Some(p) = flag {
        return found(p.to_path_buf(), Source::Flag);
    }
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        return found(p.into(), Source::Env);
    }
    let local = Path::new(LOCAL);
    if local.is_file() {
        return found(local.to_path_buf(), Source::Local);
    }
    if system.is_file() {
        return found(system.to_path_buf(), Source::System);
    }
    Err(NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_choices_win_and_are_used_as_given() {
        let missing = Path::new("/nonexistent/a.toml");
        let got = locate_in(Some(missing), Some("/nonexistent/b.toml".into()), missing).unwrap();
        assert_eq!(got.source, Source::Flag);
        let got = locate_in(None, Some("/nonexistent/b.toml".into()), missing).unwrap();
        assert_eq!(got.path, Path::new("/nonexistent/b.toml"));
        assert_eq!(got.source, Source::Env);
    }

    #[test]
    fn an_empty_variable_is_not_set() {
        // The test runs in the crate's directory, which has no rouse.toml.
        let system = tempfile::NamedTempFile::new().unwrap();
        let got = locate_in(None, Some("".into()), system.path()).unwrap();
        assert_eq!(got.source, Source::System);
        assert!(locate_in(None, None, Path::new("/nonexistent/rouse.toml")).is_err());
    }

    #[test]
    fn the_error_lists_every_place() {
        let text = NotFound.to_string();
        for place in [
            "-c FILE",
            "$ROUSE_CONFIG",
            "./rouse.toml",
            "/etc/rouse/rouse.toml",
        ] {
            assert!(text.contains(place), "{text}");
        }
    }
}
