//! Where the state file lives and how it is read and written, trusting nothing in the file
//! system that another user could have put there.
//!
//! The file tells the next rouse which process groups to kill, so a file planted by another
//! user would have rouse (as root: any process) kill for them. It lives in a directory only
//! rouse's user can write: systemd's `$RUNTIME_DIRECTORY`, else `$XDG_RUNTIME_DIR/rouse`,
//! else `/run/rouse` for root, else
//! `$TMPDIR/rouse-<uid>` (as tmux does: the sticky `/tmp` keeps others from renaming it, and
//! the checks below catch one they created first). The directory is created mode 0700 and
//! refused when it is a symlink, not owned by rouse's user, or writable by group or others;
//! the file is opened without following a symlink and replaced by a rename inside that
//! directory, so a reader never sees half of one.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::unistd::geteuid;

/// Why a directory cannot hold the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("cannot create {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("{} is a symbolic link", path.display())]
    Symlink { path: PathBuf },
    #[error("{} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{} belongs to uid {owner}, not to rouse's uid {me}", path.display())]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error("{} is writable by others than its owner (mode {mode:03o})", path.display())]
    Writable { path: PathBuf, mode: u32 },
}

/// The directory for state files of the current user; `None` only when no temporary
/// directory is known either.
pub fn default_state_dir() -> Option<PathBuf> {
    // systemd's `RuntimeDirectory=rouse` (the packaged unit): /run/rouse, made for rouse's
    // user, which the fallbacks below would miss for a user other than root.
    let systemd = std::env::var_os("RUNTIME_DIRECTORY")
        .and_then(|dirs| std::env::split_paths(&dirs).next())
        .filter(|d| d.is_absolute());
    if systemd.is_some() {
        return systemd;
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute());
    if let Some(dir) = runtime {
        return Some(dir.join("rouse"));
    }
    let uid = geteuid();
    if uid.is_root() {
        return Some(PathBuf::from("/run/rouse"));
    }
    Some(std::env::temp_dir().join(format!("rouse-{uid}"))).filter(|d| d.is_absolute())
}

/// Creates `dir` (mode 0700) unless it exists, then checks that only rouse's user can write
/// in it.
pub fn prepare_dir(dir: &Path) -> Result<(), StateDirError> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        // A missing parent ($XDG_RUNTIME_DIR always exists, /run nearly always): created
        // 0700 as well.
        Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(dir)
            .map_err(|source| StateDirError::Create {
                path: dir.to_owned(),
                source,
            })?,
        Err(source) => {
            return Err(StateDirError::Create {
                path: dir.to_owned(),
                source,
            });
        }
    }
    check_dir(dir)
}

fn check_dir(dir: &Path) -> Result<(), StateDirError> {
    let path = || dir.to_owned();
    let meta = fs::symlink_metadata(dir).map_err(|source| StateDirError::Create {
        path: path(),
        source,
    })?;
    if meta.file_type().is_symlink() {
        return Err(StateDirError::Symlink { path: path() });
    }
    if !meta.is_dir() {
        return Err(StateDirError::NotADirectory { path: path() });
    }
    let me = geteuid().as_raw();
    if meta.uid() != me {
        return Err(StateDirError::Owner {
            path: path(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(StateDirError::Writable { path: path(), mode });
    }
    Ok(())
}

/// The file's text; `None` when there is none. A symlink, or a file that is not rouse's
/// user's, is an error: its content cannot be trusted.
pub fn read(path: &Path) -> io::Result<Option<String>> {
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != geteuid().as_raw() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "not a regular file of uid {} (uid {}, mode {:o})",
                geteuid(),
                meta.uid(),
                meta.mode()
            ),
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(Some(text))
}

/// Replaces the file with `text`: written to a new file beside it (never through a symlink:
/// `O_EXCL` refuses any existing name), then renamed over it.
pub fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // Left over by a rouse killed between create and rename; unlink does not follow links.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    drop(file);
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn the_directory_is_created_0700() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/rouse");
        prepare_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&base.path().join("a")), 0o700);
        // Again: it exists, and is fine.
        prepare_dir(&dir).unwrap();
    }

    #[test]
    fn a_symlinked_directory_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let real = base.path().join("real");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
        let link = base.path().join("rouse");
        symlink(&real, &link).unwrap();
        let e = prepare_dir(&link).unwrap_err();
        assert!(matches!(e, StateDirError::Symlink { .. }), "{e}");
        assert!(e.to_string().contains(&link.display().to_string()), "{e}");
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let base = tempfile::tempdir().unwrap();
        for m in [0o770, 0o702, 0o1777] {
            let dir = base.path().join(format!("d{m:o}"));
            fs::create_dir(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(m)).unwrap();
            let e = prepare_dir(&dir).unwrap_err();
            assert!(
                matches!(e, StateDirError::Writable { mode, .. } if mode == m),
                "{m:o}: {e}"
            );
        }
        let readable = base.path().join("readable");
        fs::create_dir(&readable).unwrap();
        fs::set_permissions(&readable, fs::Permissions::from_mode(0o755)).unwrap();
        prepare_dir(&readable).unwrap();
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        let base = tempfile::tempdir().unwrap();
        // As root, a directory given away; as anyone else, the root directory is another's.
        let dir = if geteuid().is_root() {
            let dir = base.path().join("nobody");
            fs::create_dir(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
            nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            dir
        } else {
            PathBuf::from("/")
        };
        let e = prepare_dir(&dir).unwrap_err();
        assert!(matches!(e, StateDirError::Owner { .. }), "{e}");
    }

    #[test]
    fn a_file_in_the_way_is_not_a_directory() {
        let base = tempfile::tempdir().unwrap();
        let file = base.path().join("rouse");
        fs::write(&file, "").unwrap();
        let e = prepare_dir(&file).unwrap_err();
        assert!(matches!(e, StateDirError::NotADirectory { .. }), "{e}");
    }

    #[test]
    fn writes_replace_and_never_follow_a_symlink() {
        let base = tempfile::tempdir().unwrap();
        let path = base.path().join("state");
        assert_eq!(read(&path).unwrap(), None);
        write_atomically(&path, "one\n").unwrap();
        write_atomically(&path, "two\n").unwrap();
        assert_eq!(read(&path).unwrap().as_deref(), Some("two\n"));
        assert_eq!(mode(&path), 0o600);

        // A symlink planted as the temporary file or as the file itself: the target is
        // never written, and reading through the link is refused.
        let victim = base.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        symlink(&victim, base.path().join("state.tmp")).unwrap();
        write_atomically(&path, "three\n").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(read(&path).unwrap().as_deref(), Some("three\n"));
        let link = base.path().join("link");
        symlink(&victim, &link).unwrap();
        assert!(read(&link).is_err());
        write_atomically(&link, "four\n").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert!(
            !fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_file_of_another_user_is_not_read() {
        let base = tempfile::tempdir().unwrap();
        let path = if geteuid().is_root() {
            let path = base.path().join("state");
            fs::write(&path, "1 2 x y\n").unwrap();
            nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            path
        } else {
            // Owned by root, readable by all.
            PathBuf::from("/etc/passwd")
        };
        assert!(read(&path).is_err());
    }
}
