//! The request id sent to the server as `X-Request-Id` and logged: the client's when it sent a
//! sane one, otherwise 32 hex digits made here (128 bits, as nginx's `$request_id`).

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

pub(crate) const HEADER: &str = "x-request-id";

/// The longest client id kept; a longer one is replaced.
const MAX_LEN: usize = 128;

/// A generated id, on the stack.
#[derive(Clone, Copy)]
pub(crate) struct Generated([u8; 32]);

impl Generated {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Whether a client's id is kept: 1 to 128 bytes of letters, digits and `-._~:+/=@`
/// (UUIDs, hex, base64, ULIDs), nothing a header or a log line would need to escape.
pub(crate) fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~:+/=@".contains(&b))
}

thread_local! {
    /// This thread's random half (in hex, written once), and a counter scrambled into the
    /// other half.
    static STATE: ([u8; 16], Cell<u64>) = {
        let random = RandomState::new();
        let mut high = [0u8; 16];
        hex(random.hash_one(0x5eed_u64), &mut high);
        (high, Cell::new(random.hash_one(1_u64)))
    };
}

/// A new id: unique within a thread (a bijection of its counter), and across threads and
/// processes but for a 64-bit random collision. No allocation, no shared counter.
pub(crate) fn generate() -> Generated {
    let (high, low) = STATE.with(|(random, counter)| {
        let n = counter.get().wrapping_add(1);
        counter.set(n);
        (*random, mix(n))
    });
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&high);
    hex(low, &mut out[16..]);
    Generated(out)
}

/// splitmix64's finalizer: a bijection that makes consecutive counters look unrelated.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hex(mut n: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(n & 0xf) as usize];
        n >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_32_hex_digits_and_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = generate();
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit));
            assert!(is_sane(id.as_bytes()));
            assert!(seen.insert(id.as_bytes().to_vec()));
        }
        let other = std::thread::spawn(|| generate().as_bytes().to_vec())
            .join()
            .unwrap();
        assert!(!seen.contains(&other));
    }

    #[test]
    fn sane_client_ids() {
        assert!(is_sane(b"0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(is_sane(b"Root=1-5759e988-bd862e3fe1be46a994272793"));
        assert!(is_sane(&[b'a'; 128]));
        for bad in [
            &b""[..],
            &[b'a'; 129],
            b"a b",
            b"a\"b",
            b"a\x01",
            b"caf\xc3\xa9",
            b"a,b",
        ] {
            assert!(!is_sane(bad), "{bad:?}");
        }
    }
}
