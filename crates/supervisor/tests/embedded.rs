//! The embedded driver against real child processes (/bin/sh and sleep).

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rouse_config::CommandLine;
use rouse_supervisor::{
    Embedded, EmbeddedOptions, ProcessInfo, ProcessState, ProgramSpec, Supervisor, SupervisorError,
};
use tokio::sync::broadcast;
use tokio::time::{Instant, sleep, timeout};

fn sh(script: &str) -> CommandLine {
    CommandLine::Shell(script.into())
}

fn argv(args: &[&str]) -> CommandLine {
    CommandLine::Argv(args.iter().map(|a| a.to_string()).collect())
}

fn spec(program: &str, command: CommandLine) -> ProgramSpec {
    ProgramSpec {
        program: program.to_owned(),
        command,
        env: Default::default(),
        cwd: None,
        startsecs: Duration::ZERO,
        stop_signal: "TERM".to_owned(),
        stop_timeout: Duration::from_secs(3),
    }
}

/// Quick retries so the Backoff/Fatal tests take well under a second.
fn fast() -> EmbeddedOptions {
    EmbeddedOptions {
        start_retries: 2,
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        ..Default::default()
    }
}

async fn info(sup: &Embedded, program: &str) -> ProcessInfo {
    common::info(sup, program).await
}

async fn wait_state(
    sup: &Embedded,
    program: &str,
    state: ProcessState,
    within: Duration,
) -> ProcessInfo {
    common::wait_state_every(sup, program, state, within, Duration::from_millis(10)).await
}

/// The next event about `program`.
async fn next_event(
    rx: &mut broadcast::Receiver<ProcessInfo>,
    program: &str,
    within: Duration,
) -> ProcessInfo {
    timeout(within, async {
        loop {
            let i = rx.recv().await.expect("event channel");
            if i.program == program {
                return i;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event for {program} within {within:?}"))
}

/// Events about `program` up to and including the first one in `last`.
async fn events_until(
    rx: &mut broadcast::Receiver<ProcessInfo>,
    program: &str,
    last: ProcessState,
    within: Duration,
) -> Vec<ProcessInfo> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let i = next_event(rx, program, left).await;
        let done = i.state == last;
        seen.push(i);
        if done {
            return seen;
        }
    }
}

/// A zombie counts as gone: it can no longer run, only its reaper is missing.
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    state != "Z" && state != "X"
}

async fn wait_gone(pid: u32, within: Duration) {
    let deadline = Instant::now() + within;
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "pid {pid} still alive after {within:?}"
        );
        sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_file(path: &Path, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && s.ends_with('\n')
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{} not written within {within:?}",
            path.display()
        );
        sleep(Duration::from_millis(10)).await;
    }
}

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_then_running_after_startsecs() {
    let mut s = spec("app", argv(&["sleep", "30"]));
    s.startsecs = Duration::from_millis(500);
    let sup = Embedded::new(vec![s], fast());
    let mut rx = sup.subscribe();
    assert_eq!(info(&sup, "app").await.state, ProcessState::Stopped);
    let t0 = Instant::now();
    sup.start("app").await.unwrap();
    let starting = info(&sup, "app").await;
    assert_eq!(starting.state, ProcessState::Starting);
    let pid = starting.pid.expect("pid while starting");
    let ev = next_event(&mut rx, "app", SEC).await;
    assert_eq!((ev.state, ev.pid), (ProcessState::Starting, Some(pid)));
    let ev = next_event(&mut rx, "app", 5 * SEC).await;
    assert_eq!((ev.state, ev.pid), (ProcessState::Running, Some(pid)));
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "Running after {:?}",
        t0.elapsed()
    );
    let running = info(&sup, "app").await;
    assert_eq!(running.state, ProcessState::Running);
    assert!(
        running
            .description
            .starts_with(&format!("pid {pid}, uptime 0:00:0")),
        "{running:?}"
    );
    sup.shutdown().await;
    wait_gone(pid, SEC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startsecs_zero_is_running_at_once() {
    let sup = Embedded::new(vec![spec("app", argv(&["sleep", "30"]))], fast());
    let mut rx = sup.subscribe();
    sup.start("app").await.unwrap();
    let ev = next_event(&mut rx, "app", SEC).await;
    assert_eq!(ev.state, ProcessState::Starting);
    let ev = next_event(&mut rx, "app", Duration::from_millis(100)).await;
    assert_eq!(ev.state, ProcessState::Running);
    assert_eq!(info(&sup, "app").await.state, ProcessState::Running);
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_exit_backs_off_then_is_fatal() {
    let mut s = spec("app", sh("exit 3"));
    s.startsecs = SEC;
    let sup = Embedded::new(vec![s], fast());
    let mut rx = sup.subscribe();
    sup.start("app").await.unwrap();
    let events = events_until(&mut rx, "app", ProcessState::Fatal, 5 * SEC).await;
    let states: Vec<ProcessState> = events.iter().map(|e| e.state).collect();
    use ProcessState::*;
    assert_eq!(
        states,
        [Starting, Backoff, Starting, Backoff, Starting, Fatal]
    );
    assert!(
        events[1].description.contains("exited with status 3"),
        "{:?}",
        events[1]
    );
    let fatal = info(&sup, "app").await;
    assert_eq!((fatal.state, fatal.pid), (Fatal, None));
    assert!(
        fatal.description.contains("exited with status 3"),
        "{fatal:?}"
    );
    assert!(fatal.description.contains("3 tries"), "{fatal:?}");
    // A new start from Fatal begins afresh.
    sup.start("app").await.unwrap();
    let ev = next_event(&mut rx, "app", SEC).await;
    assert_eq!(ev.state, Starting);
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonexistent_binary_is_fatal_with_a_spawn_error() {
    let sup = Embedded::new(vec![spec("app", argv(&["/nonexistent/x"]))], fast());
    match sup.start("app").await {
        Err(SupervisorError::Spawn { program, reason }) => {
            assert_eq!(program, "app");
            assert!(reason.contains("No such file or directory"), "{reason}");
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
    let fatal = wait_state(&sup, "app", ProcessState::Fatal, 5 * SEC).await;
    assert!(fatal.description.starts_with("spawn error:"), "{fatal:?}");
    assert!(fatal.description.contains("/nonexistent/x"), "{fatal:?}");
    assert!(
        fatal.description.contains("No such file or directory"),
        "{fatal:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_after_running_is_seen_at_once() {
    let sup = Embedded::new(vec![spec("app", argv(&["sleep", "30"]))], fast());
    let mut rx = sup.subscribe();
    sup.start("app").await.unwrap();
    let running = events_until(&mut rx, "app", ProcessState::Running, SEC).await;
    let pid = running.last().unwrap().pid.unwrap();
    let t0 = Instant::now();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let ev = next_event(&mut rx, "app", SEC).await;
    let took = t0.elapsed();
    assert_eq!(ev.state, ProcessState::Exited, "{ev:?}");
    assert!(
        took < Duration::from_millis(200),
        "exit seen after {took:?}"
    );
    assert!(ev.description.contains("SIGKILL"), "{ev:?}");
    // Not restarted: that is the reconciler's call.
    sleep(Duration::from_millis(200)).await;
    assert_eq!(info(&sup, "app").await.state, ProcessState::Exited);
    assert!(rx.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_the_configured_signal() {
    let dir = tempfile::tempdir().unwrap();
    for signal in ["TERM", "USR1"] {
        let marker = dir.path().join(format!("got-{signal}"));
        let ready = dir.path().join(format!("ready-{signal}"));
        let mut s = spec(
            "app",
            sh(&format!(
                "trap 'echo got-{signal} > {}; exit 0' {signal}; echo ready > {}; while true; do sleep 0.1; done",
                marker.display(),
                ready.display()
            )),
        );
        s.stop_signal = signal.to_owned();
        let sup = Embedded::new(vec![s], fast());
        let mut rx = sup.subscribe();
        sup.start("app").await.unwrap();
        let pid = info(&sup, "app").await.pid.unwrap();
        wait_file(&ready, 5 * SEC).await;
        let t0 = Instant::now();
        sup.stop("app").await.unwrap();
        assert!(
            t0.elapsed() < 2 * SEC,
            "{signal} stop took {:?}",
            t0.elapsed()
        );
        assert_eq!(
            std::fs::read_to_string(&marker).unwrap(),
            format!("got-{signal}\n")
        );
        let stopped = info(&sup, "app").await;
        assert_eq!((stopped.state, stopped.pid), (ProcessState::Stopped, None));
        let states: Vec<ProcessState> = events_until(&mut rx, "app", ProcessState::Stopped, SEC)
            .await
            .iter()
            .map(|e| e.state)
            .collect();
        assert_eq!(
            states,
            [
                ProcessState::Starting,
                ProcessState::Running,
                ProcessState::Stopping,
                ProcessState::Stopped
            ]
        );
        assert!(!alive(pid));
        // Stopping what is not running is fine.
        sup.stop("app").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_ignoring_the_stop_signal_is_killed_after_stop_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut s = spec(
        "app",
        sh(&format!(
            "trap '' TERM; echo ready > {}; while true; do sleep 0.1; done",
            ready.display()
        )),
    );
    s.stop_timeout = Duration::from_millis(600);
    let sup = Embedded::new(vec![s], fast());
    sup.start("app").await.unwrap();
    let pid = info(&sup, "app").await.pid.unwrap();
    wait_file(&ready, 5 * SEC).await;
    let t0 = Instant::now();
    sup.stop("app").await.unwrap();
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(600), "stopped after {took:?}");
    assert!(took < Duration::from_millis(1600), "stopped after {took:?}");
    assert_eq!(info(&sup, "app").await.state, ProcessState::Stopped);
    assert!(!alive(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grandchildren_go_with_the_group() {
    let dir = tempfile::tempdir().unwrap();
    // Stopped: the background sleep gets the signal with its shell.
    let bg = dir.path().join("bg");
    let sup = Embedded::new(
        vec![
            spec(
                "stopped",
                sh(&format!(
                    "sleep 300 & echo $! > {}; sleep 300",
                    bg.display()
                )),
            ),
            spec(
                "exits",
                sh(&format!(
                    "sleep 300 & echo $! > {}; sleep 0.3",
                    dir.path().join("bg2").display()
                )),
            ),
        ],
        fast(),
    );
    sup.start("stopped").await.unwrap();
    let leader = info(&sup, "stopped").await.pid.unwrap();
    let grandchild: u32 = wait_file(&bg, 5 * SEC).await.trim().parse().unwrap();
    assert!(alive(leader) && alive(grandchild));
    sup.stop("stopped").await.unwrap();
    wait_gone(leader, SEC).await;
    wait_gone(grandchild, SEC).await;

    // Exited on its own: what it left in its group is killed too.
    sup.start("exits").await.unwrap();
    let grandchild: u32 = wait_file(&dir.path().join("bg2"), 5 * SEC)
        .await
        .trim()
        .parse()
        .unwrap();
    let exited = wait_state(&sup, "exits", ProcessState::Exited, 5 * SEC).await;
    assert_eq!(exited.description, "exited with status 0");
    wait_gone(grandchild, SEC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_and_cwd_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec("app", sh("echo \"$APP_ENV\" > out.txt; pwd >> out.txt"));
    s.env.insert("APP_ENV".to_owned(), "prod".to_owned());
    s.cwd = Some(dir.path().to_owned());
    let sup = Embedded::new(vec![s], fast());
    sup.start("app").await.unwrap();
    wait_state(&sup, "app", ProcessState::Exited, 5 * SEC).await;
    let out = std::fs::read_to_string(dir.path().join("out.txt")).unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    assert_eq!(out, format!("prod\n{}\n", cwd.display()));

    // A missing cwd is a spawn error that says so.
    let mut s = spec("nocwd", argv(&["true"]));
    s.cwd = Some(dir.path().join("missing"));
    sup.set_programs(vec![s]);
    let err = sup.start("nocwd").await.unwrap_err();
    assert!(err.to_string().contains("cwd"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_goes_to_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("logs/nested");
    let options = EmbeddedOptions {
        log_dir: Some(log_dir.clone()),
        ..fast()
    };
    let sup = Embedded::new(
        vec![spec(
            "app",
            sh("echo hello-out; echo hello-err >&2; sleep 30"),
        )],
        options,
    );
    sup.start("app").await.unwrap();
    let log = log_dir.join("app.log");
    let deadline = Instant::now() + 5 * SEC;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("hello-out\n") && text.contains("hello-err\n") {
            break;
        }
        assert!(Instant::now() < deadline, "log so far: {text:?}");
        sleep(Duration::from_millis(10)).await;
    }
    sup.shutdown().await;
}

/// The numbers of the `line-N` lines in `text`, in order.
fn line_numbers(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| l.strip_prefix("line-").unwrap().parse().unwrap())
        .collect()
}

/// As logrotate does: the file renamed, then a reopen asked for (SIGUSR1 in rouse). The child
/// writes on, unaware; its lines go to the new file from the reopen, each line to exactly one
/// of the two files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopen_moves_the_output_to_a_new_file_after_a_rename() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        log_dir: Some(dir.path().to_owned()),
        ..fast()
    };
    let script = "i=0; while :; do echo line-$i; i=$((i+1)); sleep 0.02; done";
    let sup = Embedded::new(vec![spec("app", sh(script))], options);
    sup.start("app").await.unwrap();
    let (log, rotated) = (dir.path().join("app.log"), dir.path().join("app.log.1"));
    wait_file(&log, 5 * SEC).await;
    std::fs::rename(&log, &rotated).unwrap();
    sup.reopen_logs();
    // The new file appears with the child's next line: the old one is written no more.
    wait_file(&log, 5 * SEC).await;
    let old = std::fs::read_to_string(&rotated).unwrap();
    let deadline = Instant::now() + 5 * SEC;
    let new = loop {
        let new = std::fs::read_to_string(&log).unwrap();
        if new.lines().count() >= 5 {
            break new;
        }
        assert!(
            Instant::now() < deadline,
            "the child's lines stopped: {new:?}"
        );
        sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap(),
        old,
        "written after the reopen"
    );
    sup.shutdown().await;
    let new = &new[..=new.rfind('\n').unwrap()];
    let (old, new) = (line_numbers(&old), line_numbers(new));
    assert!(!old.is_empty());
    let all: Vec<u64> = old.iter().chain(&new).copied().collect();
    let expected: Vec<u64> = (0..all.len() as u64).collect();
    assert_eq!(
        all, expected,
        "each line once, in order: old {old:?}, new {new:?}"
    );
}

/// A log directory that could not be made at the child's start sends its output to rouse's
/// log; a reopen tries the file again, and once the directory can be made the output goes
/// there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopen_retries_a_log_file_that_could_not_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "a file where the directory should be").unwrap();
    let options = EmbeddedOptions {
        log_dir: Some(blocker.join("logs")),
        ..fast()
    };
    let script = "i=0; while :; do echo line-$i; i=$((i+1)); sleep 0.02; done";
    let sup = Embedded::new(vec![spec("app", sh(script))], options);
    sup.start("app").await.unwrap();
    wait_state(&sup, "app", ProcessState::Running, 5 * SEC).await;
    std::fs::remove_file(&blocker).unwrap();
    sup.reopen_logs();
    let text = wait_file(&blocker.join("logs/app.log"), 5 * SEC).await;
    assert!(text.starts_with("line-"), "{text:?}");
    sup.shutdown().await;
}

fn stat_field(pid: u32, index_after_comm: usize) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(index_after_comm)
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_groups_of_a_crashed_rouse_are_killed() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("run/embedded.state");
    let options = EmbeddedOptions {
        state_file: Some(state_file.clone()),
        ..fast()
    };
    let programs = vec![spec("app", sh("sleep 300 & sleep 300"))];
    let first = Embedded::new(programs.clone(), options.clone());
    first.start("app").await.unwrap();
    let pid = wait_state(&first, "app", ProcessState::Running, 5 * SEC)
        .await
        .pid
        .unwrap();
    let recorded = std::fs::read_to_string(&state_file).unwrap();
    assert!(
        recorded.lines().any(|l| l.starts_with(&format!("{pid} "))),
        "{recorded}"
    );

    // An unrelated group whose pgid is in the file with another start time: a recycled pid,
    // to be left alone.
    let mut stranger = std::process::Command::new("sleep");
    stranger.arg("30").process_group(0);
    let mut stranger = stranger.spawn().unwrap();
    let stranger_pid = stranger.id();
    let starttime: u64 = stat_field(stranger_pid, 19).parse().unwrap();
    std::fs::write(
        &state_file,
        format!(
            "{recorded}{stranger_pid} {} other sleep 30\n",
            starttime + 1
        ),
    )
    .unwrap();

    // As if the first rouse had been SIGKILLed: its children are still there.
    let second = {
        let options = options.clone();
        tokio::task::spawn_blocking(move || Embedded::new(programs, options))
            .await
            .unwrap()
    };
    wait_gone(pid, 3 * SEC).await;
    assert!(alive(stranger_pid), "a stranger was killed");
    let _ = stranger.kill();
    let _ = stranger.wait();
    // The first driver saw its child die, as it would any exit.
    let ev = wait_state(&first, "app", ProcessState::Exited, SEC).await;
    assert!(ev.description.contains("SIGTERM"), "{ev:?}");
    assert_eq!(info(&second, "app").await.state, ProcessState::Stopped);
    drop(first);
    drop(second);
}

/// A state file in a directory others can write may have been planted: it is neither read
/// (the group it lists is left alone, though its start time matches) nor written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_others_could_have_written_is_ignored() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let state_file = open.join("embedded.state");

    let mut victim = std::process::Command::new("sleep");
    victim.arg("30").process_group(0);
    let mut victim = victim.spawn().unwrap();
    let pid = victim.id();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let planted = format!(
        "boot {}\n{pid} {} x sleep 30\n",
        boot.trim(),
        stat_field(pid, 19)
    );
    std::fs::write(&state_file, &planted).unwrap();

    let options = EmbeddedOptions {
        state_file: Some(state_file.clone()),
        ..fast()
    };
    let sup = tokio::task::spawn_blocking(move || {
        Embedded::new(vec![spec("app", argv(&["sleep", "30"]))], options)
    })
    .await
    .unwrap();
    sup.start("app").await.unwrap();
    assert!(alive(pid), "a group listed in a planted file was killed");
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), planted);
    let _ = victim.kill();
    let _ = victim.wait();
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_file_follows_the_children() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("embedded.state");
    let options = EmbeddedOptions {
        state_file: Some(state_file.clone()),
        ..fast()
    };
    let sup = Embedded::new(vec![spec("app", argv(&["sleep", "30"]))], options);
    sup.start("app").await.unwrap();
    let pid = info(&sup, "app").await.pid.unwrap();
    let text = std::fs::read_to_string(&state_file).unwrap();
    assert!(
        text.contains(&format!("{pid} ")) && text.contains(" app sleep 30"),
        "{text}"
    );
    sup.stop("app").await.unwrap();
    let text = std::fs::read_to_string(&state_file).unwrap();
    assert!(!text.contains(" app "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_everything_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut stubborn = spec(
        "stubborn",
        sh(&format!(
            "trap '' TERM; echo ready > {}; while true; do sleep 0.1; done",
            ready.display()
        )),
    );
    stubborn.stop_timeout = Duration::from_millis(700);
    let mut stubborn2 = stubborn.clone();
    stubborn2.program = "stubborn2".to_owned();
    let sup = Embedded::new(
        vec![
            spec("a", argv(&["sleep", "30"])),
            stubborn,
            stubborn2,
            spec("never", argv(&["true"])),
        ],
        fast(),
    );
    let mut pids = Vec::new();
    for p in ["a", "stubborn", "stubborn2"] {
        sup.start(p).await.unwrap();
        pids.push(info(&sup, p).await.pid.unwrap());
    }
    wait_file(&ready, 5 * SEC).await;
    sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    sup.shutdown().await;
    let took = t0.elapsed();
    // Two stubborn children, 700 ms each: in parallel, not one after the other.
    assert!(took < Duration::from_millis(1300), "shutdown took {took:?}");
    for i in sup.observe().await.unwrap() {
        assert_eq!(i.state, ProcessState::Stopped, "{i:?}");
    }
    for pid in pids {
        assert!(!alive(pid), "{pid} survived shutdown");
    }
    assert!(matches!(
        sup.start("a").await,
        Err(SupervisorError::Other(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_driver_kills_the_children() {
    let dir = tempfile::tempdir().unwrap();
    let bg = dir.path().join("bg");
    let sup = Embedded::new(
        vec![spec(
            "app",
            sh(&format!(
                "sleep 300 & echo $! > {}; sleep 300",
                bg.display()
            )),
        )],
        fast(),
    );
    sup.start("app").await.unwrap();
    let leader = info(&sup, "app").await.pid.unwrap();
    let grandchild: u32 = wait_file(&bg, 5 * SEC).await.trim().parse().unwrap();
    drop(sup);
    wait_gone(leader, SEC).await;
    wait_gone(grandchild, SEC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_while_running_is_a_no_op() {
    let sup = Embedded::new(vec![spec("app", argv(&["sleep", "30"]))], fast());
    let mut rx = sup.subscribe();
    sup.start("app").await.unwrap();
    let pid = wait_state(&sup, "app", ProcessState::Running, SEC)
        .await
        .pid;
    events_until(&mut rx, "app", ProcessState::Running, SEC).await;
    sup.start("app").await.unwrap();
    sup.start("app").await.unwrap();
    assert_eq!(info(&sup, "app").await.pid, pid);
    sleep(Duration::from_millis(50)).await;
    assert!(rx.try_recv().is_err(), "a no-op start made an event");
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_right_after_a_stop_starts_a_new_process() {
    let sup = Embedded::new(vec![spec("app", argv(&["sleep", "30"]))], fast());
    sup.start("app").await.unwrap();
    let first = info(&sup, "app").await.pid.unwrap();
    let (stopped, started) = tokio::join!(sup.stop("app"), async {
        sleep(Duration::from_millis(5)).await;
        sup.start("app").await
    });
    stopped.unwrap();
    started.unwrap();
    let now = wait_state(&sup, "app", ProcessState::Running, SEC).await;
    assert_ne!(now.pid, Some(first));
    assert!(!alive(first));
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_backoff_cancels_the_retry() {
    let options = EmbeddedOptions {
        backoff_base: Duration::from_millis(300),
        ..fast()
    };
    let mut s = spec("app", sh("exit 1"));
    s.startsecs = SEC;
    let sup = Embedded::new(vec![s], options);
    let mut rx = sup.subscribe();
    sup.start("app").await.unwrap();
    events_until(&mut rx, "app", ProcessState::Backoff, 5 * SEC).await;
    let t0 = Instant::now();
    sup.stop("app").await.unwrap();
    assert!(t0.elapsed() < Duration::from_millis(100));
    let ev = next_event(&mut rx, "app", SEC).await;
    assert_eq!(ev.state, ProcessState::Stopped);
    sleep(Duration::from_millis(600)).await;
    assert!(rx.try_recv().is_err(), "retried after the stop");
    assert_eq!(info(&sup, "app").await.state, ProcessState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_programs_adds_and_removes() {
    let sup = Embedded::new(
        vec![
            spec("a", argv(&["sleep", "30"])),
            spec("b", argv(&["sleep", "30"])),
        ],
        fast(),
    );
    sup.start("a").await.unwrap();
    let a_pid = info(&sup, "a").await.pid.unwrap();
    let mut b2 = spec("b", argv(&["sleep", "31"]));
    b2.startsecs = Duration::from_millis(1);
    sup.set_programs(vec![b2, spec("c", argv(&["sleep", "30"]))]);
    // "a" is stopped, then forgotten.
    let deadline = Instant::now() + 5 * SEC;
    loop {
        let names: Vec<String> = sup
            .observe()
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.program)
            .collect();
        if names == ["b", "c"] {
            break;
        }
        assert!(Instant::now() < deadline, "observed {names:?}");
        sleep(Duration::from_millis(10)).await;
    }
    wait_gone(a_pid, SEC).await;
    assert!(
        matches!(sup.start("a").await, Err(SupervisorError::BadName { program, .. }) if program == "a")
    );
    let c = info(&sup, "c").await;
    assert_eq!(
        (c.state, c.description.as_str()),
        (ProcessState::Stopped, "not started")
    );
    // The changed spec of "b" is used by its next start.
    sup.start("b").await.unwrap();
    let b_pid = info(&sup, "b").await.pid.unwrap();
    // Right after exec the kernel has the new image but not yet its argv
    // (cmdline reads empty for that instant), so read until it is set.
    let deadline = Instant::now() + SEC;
    let cmdline = loop {
        let c = std::fs::read(format!("/proc/{b_pid}/cmdline")).unwrap();
        if !c.is_empty() || Instant::now() > deadline {
            break c;
        }
        sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(cmdline, b"sleep\x0031\x00");
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_programs_are_bad_names() {
    let sup: Arc<Embedded> = Embedded::new(vec![], EmbeddedOptions::default());
    assert!(matches!(
        sup.start("nope").await,
        Err(SupervisorError::BadName { .. })
    ));
    assert!(matches!(
        sup.stop("nope").await,
        Err(SupervisorError::BadName { .. })
    ));
    assert!(sup.observe().await.unwrap().is_empty());
    assert_eq!(sup.name(), "embedded");
}
