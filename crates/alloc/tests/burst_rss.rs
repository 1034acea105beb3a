//! A burst's memory goes back to the system. The only test in this binary: RSS is the whole
//! process's, and other tests running beside it (a panic's backtrace alone reads tens of MB
//! of debug info) would move it.

use rouse_alloc::apart;

/// Resident set size in bytes, from /proc.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// 64 MiB of small blocks, one in 64 copied out: every page of the burst held a kept block,
/// so only a heap of its own lets the pages go (the thread's own heap would keep each one).
#[test]
#[cfg(target_os = "linux")]
fn a_burst_is_given_back_and_the_kept_copy_survives() {
    let before = rss();
    let kept: Vec<String> = apart(
        || {
            (0..65_536)
                .map(|i| format!("{i:01024}"))
                .collect::<Vec<String>>()
        },
        |all| all.iter().step_by(64).cloned().collect(),
    );
    let after = rss();
    assert_eq!(kept.len(), 1024);
    assert!(
        kept.iter()
            .enumerate()
            .all(|(i, s)| s == &format!("{:01024}", i * 64))
    );
    assert!(
        after < before + 16 * 1024 * 1024,
        "RSS {} MiB before, {} MiB after a 64 MiB burst whose 1 MiB was kept",
        before >> 20,
        after >> 20
    );
}
