//! Free ports.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// A port on 127.0.0.1 that was free a moment ago.
///
/// The listener that found it is closed before this returns, so another process can take the
/// port before the caller binds it. That race is rare on a test machine but real: prefer
/// binding port 0 and reading the address back (what the backends here do) whenever the thing
/// under test allows it, and use this only for something that must be told a port up front.
pub fn free_port() -> u16 {
    free_addr().port()
}

/// [`free_port`] as `127.0.0.1:PORT`, with the same race.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read a bound listener's address: {e}"))
}

/// A port on 127.0.0.1, free a moment ago, that no other call in this process returned and
/// that the kernel does not hand out by itself: it is below the ephemeral range
/// (`ip_local_port_range`) that `bind(0)` and outgoing connections draw from.
///
/// For something that is told its port and may lose it and bind it again (a backend killed
/// and started again, a supervisord restarted): with [`free_port`], the port may meanwhile be
/// the source port of some connection, or another test's fresh listener, and the test then
/// talks to a stranger. Other processes choosing ports by hand remain a risk; the start is
/// drawn from the process id to keep concurrent test binaries apart.
pub fn unique_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = 10_000u32;
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&start| start > low + 1000)
        .unwrap_or(32_768);
    let span = high - low;
    let base = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = low + (base + n) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// [`unique_port`] as `127.0.0.1:PORT`.
pub fn unique_addr() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, unique_port()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ports_differ_and_are_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| unique_port()).collect();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len(), "{ports:?}");
        assert!(
            ports.iter().all(|&p| (10_000..32_768).contains(&p)),
            "{ports:?}"
        );
    }
}
