//! The few facts about other processes that only /proc can tell.

use std::fs;

use nix::errno::Errno;
use nix::sys::signal::killpg;
use nix::unistd::Pid;

pub(super) struct Stat {
    /// One letter: R, S, D, Z, ...
    pub state: char,
    pub pgrp: i32,
    /// Clock ticks after boot; unlike the pid it is never reused, so it identifies a process.
    pub starttime: u64,
}

impl Stat {
    /// A zombie (or a process being torn down) can no longer do anything: only its parent's
    /// `wait` is missing, and that is not ours to do.
    pub fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

pub(super) fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may itself contain spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        starttime: fields.get(19)?.parse().ok()?,
    })
}

/// Whether any process of group `pgid` can still run. Zombies do not count: a grandchild
/// orphaned to an init that reaps slowly would otherwise hold every stop until its timeout.
pub(super) fn group_alive(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    if killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH) {
        return false;
    }
    let Ok(dir) = fs::read_dir("/proc") else {
        // No /proc to tell zombies apart: trust the kernel's answer.
        return true;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .any(|s| s.pgrp == pgid && s.is_live())
}

/// Changes at every boot, so a state file written before a reboot is recognised as such.
pub(super) fn boot_id() -> Option<String> {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_owned()).filter(|s| !s.is_empty())
}
