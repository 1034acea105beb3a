//! Where the real binary keeps the embedded supervisor's state file: `$XDG_RUNTIME_DIR/rouse`,
//! created mode 0700, used by the next rouse after a SIGKILL; and not at all (a WARN naming
//! the directory) when that directory is a symlink or others can write it.

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{ROUSE, WAIT, free_addrs};

const POLL: Duration = Duration::from_millis(25);

/// A rouse keeping one `sleep` child up (`min_servers = 1`).
fn config(dir: &Path) -> PathBuf {
    let [listen, server] = free_addrs();
    let path = dir.join("rouse.toml");
    std::fs::write(
        &path,
        format!(
            "[proxy]\nlisten = [\"{listen}\"]\n\
             [[upstream]]\nname = \"keep\"\nmin_servers = 1\nready = \"supervisor\"\n\
             [[upstream.server]]\naddress = \"{server}\"\ncommand = [\"sleep\", \"300\"]\nstartsecs = \"0s\"\n"
        ),
    )
    .unwrap();
    path
}

/// `rouse run -c config` with `XDG_RUNTIME_DIR=runtime`, its log in `log`.
fn spawn(config: &Path, runtime: &Path, log: &Path) -> Child {
    Command::new(ROUSE)
        .args(["run", "-c"])
        .arg(config)
        .env("XDG_RUNTIME_DIR", runtime)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..WAIT.as_millis() / POLL.as_millis() {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(POLL);
    }
    panic!("timed out waiting for {what}");
}

/// The pgids listed in the state files of `dir`.
fn recorded(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pgids"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .flat_map(|text| {
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with("boot "))
                .filter_map(|l| l.split(' ').next()?.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// A live, non-zombie process whose command line is `sleep 300`.
fn is_our_sleep(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit(')')
        .next()
        .is_none_or(|s| s.trim_start().starts_with('Z'));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    !zombie && cmdline == b"sleep\x00300\x00"
}

fn stop(mut child: Child) {
    assert!(signal(&child, "TERM"), "kill -TERM");
    wait_for("rouse to exit", || child.try_wait().unwrap());
}

fn signal(child: &Child, sig: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_state_file_lives_in_xdg_runtime_dir_and_serves_the_next_rouse() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let state_dir = runtime.join("rouse");
    let config = config(dir.path());
    let log = dir.path().join("first.log");

    let mut first = spawn(&config, &runtime, &log);
    let orphan = wait_for("the child in the state file", || {
        recorded(&state_dir).into_iter().find(|p| is_our_sleep(*p))
    });
    assert_eq!(mode(&state_dir), 0o700);
    // SIGKILL: no chance to stop the child, which the file still lists.
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(is_our_sleep(orphan), "SIGKILL leaves the child running");

    let second = spawn(&config, &runtime, &dir.path().join("second.log"));
    wait_for("the orphan to be killed", || {
        (!is_our_sleep(orphan)).then_some(())
    });
    let child = wait_for("the second rouse's child", || {
        recorded(&state_dir)
            .into_iter()
            .find(|p| *p != orphan && is_our_sleep(*p))
    });
    stop(second);
    assert!(!is_our_sleep(child), "stopped with rouse");
}

#[test]
fn a_state_dir_others_could_write_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    // Each case: an `XDG_RUNTIME_DIR` whose `rouse` directory is not rouse's user's alone.
    let symlinked = dir.path().join("symlinked");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&symlinked).unwrap();
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();
    symlink(&elsewhere, symlinked.join("rouse")).unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir_all(open.join("rouse")).unwrap();
    std::fs::set_permissions(open.join("rouse"), std::fs::Permissions::from_mode(0o777)).unwrap();

    for (runtime, looked_at, why) in [
        (&symlinked, &elsewhere, "is a symbolic link"),
        (&open, &open.join("rouse"), "writable by others"),
    ] {
        let log = dir.path().join("rouse.log");
        let rouse = spawn(&config, runtime, &log);
        let text = wait_for("the WARN about the state directory", || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("running without a state file")
                .then_some(text)
        });
        let named = runtime.join("rouse").display().to_string();
        assert!(text.contains(&named) && text.contains(why), "{text}");
        stop(rouse);
        let written: Vec<_> = std::fs::read_dir(looked_at).unwrap().flatten().collect();
        assert!(written.is_empty(), "{why}: wrote {written:?}");
    }
}
