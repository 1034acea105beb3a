//! A backend that costs next to nothing: one thread, mio, one read and one write per request,
//! answering every GET with the bytes nginx's `return 200 "hello world\n"` answers (its
//! fields, a Date fixed at start). `bench/proxy.sh BACKEND=floor` puts it behind the proxies
//! in place of nginx, so that on two cores the backend and the load generator, which share
//! CPU 0, leave the proxy on CPU 1 to be what limits the rate: with nginx as the backend, CPU
//! 0 is the limit and every proxy's rate comes within a few percent of the backend's own.
//! `GET /forwarded` answers with the forwarding fields it was sent (SAME_JOB's check), as
//! the nginx backend's `location = /forwarded` does.
#![forbid(unsafe_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rouse_floor::{BUF, head_end, listen_mio};

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    buf: Box<[u8; BUF]>,
    len: usize,
    out: Vec<u8>,
}

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("usage: floor-backend LISTEN_ADDR"));
    let answer = answer(&http_date());
    let mut poll = Poll::new()?;
    let listener = listen_mio(&poll, addr, LISTENER)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut events = Events::with_capacity(1024);
    loop {
        poll.poll(&mut events, None)?;
        for ev in events.iter() {
            if ev.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    stream.set_nodelay(true)?;
                    let at = conns.iter().position(Option::is_none).unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    poll.registry()
                        .register(&mut stream, Token(at), Interest::READABLE)?;
                    let mut c = Conn {
                        stream,
                        buf: Box::new([0; BUF]),
                        len: 0,
                        out: Vec::with_capacity(1024),
                    };
                    // Edge-triggered: what came with the connect is read now.
                    if serve(&mut c, &answer) {
                        conns[at] = Some(c);
                    }
                }
                continue;
            }
            let at = ev.token().0;
            if let Some(c) = conns[at].as_mut()
                && !serve(c, &answer)
            {
                conns[at] = None;
            }
        }
    }
}

/// Reads what `c` has and answers each whole request in it; false once it is over. The
/// answers are small and the proxies wait for each: a write that would block is the end of a
/// connection that misbehaves, not a case to wait for.
fn serve(c: &mut Conn, answer: &[u8]) -> bool {
    loop {
        let n = match c.stream.read(&mut c.buf[c.len..]) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        let room = BUF - c.len;
        c.len += n;
        c.out.clear();
        let mut at = 0;
        while let Some(end) = head_end(&c.buf[at..c.len]) {
            let head = &c.buf[at..at + end];
            if head.starts_with(b"GET /forwarded ") {
                forwarded(head, &mut c.out);
            } else {
                c.out.extend_from_slice(answer);
            }
            at += end;
        }
        c.buf.copy_within(at..c.len, 0);
        c.len -= at;
        if c.len == BUF {
            return false;
        }
        if !c.out.is_empty() && c.stream.write(&c.out).ok() != Some(c.out.len()) {
            return false;
        }
        // A short read emptied the socket (as tokio assumes): no read to WouldBlock.
        if n < room {
            return true;
        }
    }
}

/// The answer to every other GET: nginx's to `return 200 "hello world\n"`, field for field.
fn answer(date: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: {date}\r\nContent-Type: text/plain\r\n\
         Content-Length: 12\r\nConnection: keep-alive\r\n\r\nhello world\n"
    )
    .into_bytes()
}

/// `host=… for=… fhost=… proto=… id=…`, as the nginx backend's `/forwarded` says them.
fn forwarded(head: &[u8], out: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(head);
    let field = |name: &str| -> String {
        text.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let body = format!(
        "host={} for={} fhost={} proto={} id={}\n",
        field("host"),
        field("x-forwarded-for"),
        field("x-forwarded-host"),
        field("x-forwarded-proto"),
        field("x-request-id")
    );
    out.extend_from_slice(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

/// Now as an HTTP date (RFC 9110 IMF-fixdate), from the system clock alone.
fn http_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    // 1970-01-01 was a Thursday.
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let (y, mo, d) = civil(days as i64);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][mo as usize - 1];
    format!("{weekday}, {d:02} {month} {y} {h:02}:{m:02}:{s:02} GMT")
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_787), (2026, 11, 30));
        assert_eq!(civil(11_016), (2000, 2, 29));
    }

    #[test]
    fn forwarded_fields() {
        let mut out = Vec::new();
        forwarded(
            b"GET /forwarded HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nx-request-id: z\r\n\r\n",
            &mut out,
        );
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.ends_with("\r\n\r\nhost=a for=1.2.3.4 fhost= proto= id=z\n"),
            "{out}"
        );
    }
}
