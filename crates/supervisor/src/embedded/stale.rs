//! The state file: the process groups of running children, so that a rouse that was
//! SIGKILLed (and so could not stop its children) has them killed by the next one. Where it
//! lives and how it is read and written: [`super::state_file`].
//!
//! Format, one group a line after a `boot <boot_id>` line:
//! `<pgid> <starttime|-> <program> <cmdline...>`. A group is killed only when its leader is
//! still the process rouse started: same boot, same start time (field 22 of /proc/PID/stat,
//! clock ticks since boot, which a recycled pid cannot share), or, with the leader gone, some
//! members left (a pgid is not reused while its group has members). The cmdline is not
//! compared: `sh -c` execs the real server, and it proves nothing a start time does not.
//! Without a boot id or a start time (no /proc when it was written) nothing can be proven,
//! and nothing is killed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, getpgrp};

use super::{procfs, state_file};

const HEADER: &str = "# rouse embedded supervisor: process groups of running children\n\
# pgid starttime program cmdline\n";

/// How long a stale group gets between SIGTERM and SIGKILL.
const STALE_GRACE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GroupRecord {
    pub program: String,
    pub starttime: Option<u64>,
    pub cmdline: String,
}

impl GroupRecord {
    /// Describes the group `pgid` whose leader was just spawned with `argv`. The cmdline is
    /// the argv given, not /proc's: right after spawn the exec may still be under way, and
    /// /proc then shows an empty one.
    pub fn of_leader(pgid: i32, program: &str, argv: &[String]) -> GroupRecord {
        GroupRecord {
            program: program.to_owned(),
            starttime: procfs::stat(pgid).map(|s| s.starttime),
            cmdline: argv.join(" "),
        }
    }
}

/// The live groups, mirrored into the state file on every change.
pub(super) struct Groups {
    path: Option<PathBuf>,
    boot_id: Option<String>,
    live: BTreeMap<i32, GroupRecord>,
}

impl Groups {
    pub fn new(path: Option<PathBuf>) -> Groups {
        let groups = Groups {
            path,
            boot_id: procfs::boot_id(),
            live: BTreeMap::new(),
        };
        groups.persist();
        groups
    }

    pub fn insert(&mut self, pgid: i32, record: GroupRecord) {
        self.live.insert(pgid, record);
        self.persist();
    }

    pub fn remove(&mut self, pgid: i32) {
        if self.live.remove(&pgid).is_some() {
            self.persist();
        }
    }

    /// Stops writing the state file: after a handover it is the next rouse's.
    pub fn release_file(&mut self) {
        self.path = None;
    }

    /// Writes the state file again (after a handover that came to nothing).
    pub fn reclaim_file(&mut self, path: PathBuf) {
        self.path = Some(path);
        self.persist();
    }

    /// No longer ours to kill: handed over to the next rouse, which records it itself.
    pub fn forget(&mut self, pgid: i32) -> Option<GroupRecord> {
        let record = self.live.remove(&pgid);
        if record.is_some() {
            self.persist();
        }
        record
    }

    /// Last resort when the driver is dropped without `shutdown`: no time to be graceful.
    pub fn kill_all(&mut self) {
        for (pgid, record) in std::mem::take(&mut self.live) {
            tracing::warn!(pgid, program = %record.program, "killing the process group of a child still running as the embedded supervisor is dropped");
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        self.persist();
    }

    fn persist(&self) {
        let Some(path) = &self.path else { return };
        let mut text = String::from(HEADER);
        if let Some(boot) = &self.boot_id {
            text.push_str(&format!("boot {boot}\n"));
        }
        for (pgid, r) in &self.live {
            let start = r.starttime.map_or("-".to_owned(), |t| t.to_string());
            text.push_str(&format!(
                "{pgid} {start} {} {}\n",
                escape(&r.program, true),
                escape(&r.cmdline, false)
            ));
        }
        if let Err(e) = state_file::write_atomically(path, &text) {
            tracing::warn!(path = %path.display(), %e, "cannot write the embedded supervisor's state file");
        }
    }
}

/// A line break would end the record, and in a field (`spaces`) so would a space; the
/// backslash is escaped too so that distinct strings stay distinct.
fn escape(s: &str, spaces: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ' ' if spaces => out.push_str("\\s"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

struct Entry {
    pgid: i32,
    starttime: Option<u64>,
    program: String,
    cmdline: String,
}

fn parse(text: &str) -> (Option<String>, Vec<Entry>) {
    let mut boot = None;
    let mut entries = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        if let Some(id) = line.strip_prefix("boot ") {
            boot = Some(id.trim().to_owned());
            continue;
        }
        let mut fields = line.splitn(4, ' ');
        let (Some(pgid), Some(start), Some(program)) =
            (fields.next(), fields.next(), fields.next())
        else {
            tracing::warn!(line, "ignoring a malformed line of the state file");
            continue;
        };
        let (Ok(pgid), Ok(starttime)) = (
            pgid.parse::<i32>(),
            match start {
                "-" => Ok(None),
                s => s.parse::<u64>().map(Some),
            },
        ) else {
            tracing::warn!(line, "ignoring a malformed line of the state file");
            continue;
        };
        entries.push(Entry {
            pgid,
            starttime,
            program: program.to_owned(),
            cmdline: fields.next().unwrap_or("").to_owned(),
        });
    }
    (boot, entries)
}

/// Whether group `e.pgid` is still the one recorded, and not a stranger that got its number.
/// The boot was checked by the caller.
fn still_ours(e: &Entry) -> bool {
    if e.pgid <= 1 || e.pgid == getpgrp().as_raw() || !procfs::group_alive(e.pgid) {
        return false;
    }
    let Some(recorded) = e.starttime else {
        tracing::warn!(pgid = e.pgid, program = %e.program, "a process group of the state file has no start time: it cannot be told from a stranger, and is left alone");
        return false;
    };
    match procfs::stat(e.pgid) {
        // Leader gone but members left: a pgid stays reserved while its group has members,
        // so they can only be the recorded group's.
        None => true,
        Some(leader) => leader.pgrp == e.pgid && leader.starttime == recorded,
    }
}

/// Kills the groups a previous rouse recorded in `path` and that are still alive:
/// SIGTERM, up to 2 s, then SIGKILL. Blocks the calling thread meanwhile.
pub(super) fn kill_stale(path: &Path) {
    let text = match state_file::read(path) {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(path = %path.display(), %e, "cannot read the embedded supervisor's state file; children of a crashed rouse may be left running");
            return;
        }
    };
    let (boot, entries) = parse(&text);
    let now = procfs::boot_id();
    if boot.is_none() || now.is_none() {
        if !entries.is_empty() {
            tracing::warn!(path = %path.display(), "no boot id to tell whether the state file is from this boot: its process groups are left alone");
        }
        return;
    }
    if boot != now {
        tracing::info!(path = %path.display(), "state file is from before a reboot: nothing left to kill");
        return;
    }
    let stale: Vec<Entry> = entries.into_iter().filter(still_ours).collect();
    for e in &stale {
        tracing::warn!(pgid = e.pgid, program = %e.program, cmdline = %e.cmdline, "killing a process group left running by a previous rouse");
        let _ = killpg(Pid::from_raw(e.pgid), Signal::SIGTERM);
        let _ = killpg(Pid::from_raw(e.pgid), Signal::SIGCONT);
    }
    let polls = STALE_GRACE.as_millis() / POLL.as_millis();
    for _ in 0..polls {
        if !stale.iter().any(|e| procfs::group_alive(e.pgid)) {
            return;
        }
        std::thread::sleep(POLL);
    }
    for e in stale.iter().filter(|e| procfs::group_alive(e.pgid)) {
        tracing::warn!(pgid = e.pgid, program = %e.program, "stale process group ignored SIGTERM for {STALE_GRACE:?}: SIGKILL");
        let _ = killpg(Pid::from_raw(e.pgid), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_writes() {
        let text =
            format!("{HEADER}boot abc\n123 456 app\\s0 /bin/sh -c sleep 300\n77 - b x\nbad line\n");
        let (boot, entries) = parse(&text);
        assert_eq!(boot.as_deref(), Some("abc"));
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].pgid, entries[0].starttime), (123, Some(456)));
        assert_eq!(entries[0].program, "app\\s0");
        assert_eq!(entries[0].cmdline, "/bin/sh -c sleep 300");
        assert_eq!((entries[1].pgid, entries[1].starttime), (77, None));
    }

    /// A `sleep` leading its own group, as rouse starts its children.
    fn leader() -> (std::process::Child, i32, u64) {
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = i32::try_from(child.id()).unwrap();
        let starttime = procfs::stat(pgid).unwrap().starttime;
        (child, pgid, starttime)
    }

    fn reap(mut child: std::process::Child) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        let _ = child.kill();
        child.wait().unwrap().signal()
    }

    fn state(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("state");
        std::fs::write(&path, format!("{HEADER}{text}")).unwrap();
        path
    }

    #[test]
    fn a_group_is_killed_only_if_its_leader_has_the_recorded_start_time() {
        let dir = tempfile::tempdir().unwrap();
        let boot = procfs::boot_id().expect("a boot id in /proc");
        let (mut child, pgid, starttime) = leader();

        // A recycled pid: same number, another process (another start time).
        for other in [starttime + 1, starttime.saturating_sub(1)] {
            kill_stale(&state(
                dir.path(),
                &format!("boot {boot}\n{pgid} {other} app sleep 30\n"),
            ));
            assert!(
                child.try_wait().unwrap().is_none(),
                "killed with start time {other}"
            );
        }
        // Nothing proves it is ours without a start time, or a boot id, or with another boot.
        for text in [
            format!("boot {boot}\n{pgid} - app sleep 30\n"),
            format!("{pgid} {starttime} app sleep 30\n"),
            format!("boot not-{boot}\n{pgid} {starttime} app sleep 30\n"),
        ] {
            kill_stale(&state(dir.path(), &text));
            assert!(child.try_wait().unwrap().is_none(), "killed by {text:?}");
        }

        // The very process rouse started: killed by the SIGTERM (not the SIGKILL after the
        // grace).
        kill_stale(&state(
            dir.path(),
            &format!("boot {boot}\n{pgid} {starttime} app sleep 30\n"),
        ));
        assert_eq!(reap(child), Some(15));
    }

    #[test]
    fn a_state_file_behind_a_symlink_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let boot = procfs::boot_id().expect("a boot id in /proc");
        let (mut child, pgid, starttime) = leader();
        let real = state(
            dir.path(),
            &format!("boot {boot}\n{pgid} {starttime} app sleep 30\n"),
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        kill_stale(&link);
        assert!(
            child.try_wait().unwrap().is_none(),
            "killed through a symlink"
        );
        assert_eq!(reap(child), Some(9));
    }

    #[test]
    fn escapes_separators() {
        assert_eq!(escape("a b\\c\nd", true), "a\\sb\\\\c\\nd");
        assert_eq!(escape("a b\\c\nd", false), "a b\\\\c\\nd");
    }
}
