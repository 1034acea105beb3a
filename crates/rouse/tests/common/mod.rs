//! Shared by the tests that run the `rouse` binary: where it is, the bound on every wait, free
//! loopback ports, and its output as text.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Output};
use std::time::Duration;

pub const ROUSE: &str = env!("CARGO_BIN_EXE_rouse");
/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

/// `N` distinct free ports on 127.0.0.1 (all held while picking).
pub fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    let ls: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| ls[i].local_addr().unwrap())
}

/// A process (a `rouse run`, a supervisord) killed and reaped when dropped, so that a failed
/// assertion leaves nothing behind.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
