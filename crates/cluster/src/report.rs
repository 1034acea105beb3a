//! What one replica publishes about its own traffic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One replica's load, as it was when put. Durations are relative ("idle for so long"), never
/// wall-clock times, so replicas' clocks need not agree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The etcd revision of the snapshot whose drains this replica had applied when it made
    /// the report: the leader counts a replica's "draining" only from a report at or past the
    /// drain key's own revision.
    pub seen: i64,
    /// [`fingerprint`] of this replica's upstreams and servers: replicas name servers to each
    /// other by upstream and index, which only means the same server where they agree. 0:
    /// not said (an older replica).
    #[serde(default)]
    pub servers: u64,
    /// Only upstreams with something to say: requests held, a rate, or a server that is not
    /// stopped here. An upstream or server left out has none of that.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstreams: BTreeMap<String, UpstreamLoad>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpstreamLoad {
    /// Requests this replica holds for the upstream (no server ready, or none with room).
    #[serde(default)]
    pub held: u64,
    /// Requests/s this replica forwarded to it over the last few seconds.
    #[serde(default)]
    pub rps: f64,
    /// By the server's index in the upstream (replicas share the config).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub servers: BTreeMap<usize, ServerLoad>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerLoad {
    /// Requests in flight on it from this replica, open upgraded connections included.
    #[serde(default)]
    pub in_flight: u32,
    /// Since the last request started or ended on it here, in milliseconds.
    #[serde(default)]
    pub idle_ms: u64,
    /// This replica routes nothing new to it.
    #[serde(default)]
    pub draining: bool,
}

/// A hash of the upstreams and their servers in order (each upstream's name, each server's
/// address and program), stable across builds and hosts (FNV-1a: std's hasher may change
/// between Rust releases, and replicas may run different builds).
pub fn fingerprint<'a>(
    upstreams: impl IntoIterator<Item = (&'a str, Vec<(String, &'a str)>)>,
) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for b in bytes.iter().chain([&0xff]) {
            h = (h ^ u64::from(*b)).wrapping_mul(PRIME);
        }
    };
    for (name, servers) in upstreams {
        eat(b"upstream");
        eat(name.as_bytes());
        for (address, program) in servers {
            eat(address.as_bytes());
            eat(program.as_bytes());
        }
    }
    // 0 means "not said".
    h.max(1)
}

impl Report {
    /// Its load on server `index` of `upstream`; None when the report leaves it out.
    pub fn server(&self, upstream: &str, index: usize) -> Option<&ServerLoad> {
        self.upstreams.get(upstream)?.servers.get(&index)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Report, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_follows_names_addresses_programs_and_order() {
        let f = |ups: &[(&'static str, &[(&'static str, &'static str)])]| {
            fingerprint(ups.iter().map(|(name, servers)| {
                (
                    *name,
                    servers
                        .iter()
                        .map(|(a, p)| ((*a).to_owned(), *p))
                        .collect::<Vec<_>>(),
                )
            }))
        };
        let base = f(&[("app", &[("10.0.0.1:80", "app0"), ("10.0.0.2:80", "app1")])]);
        assert_eq!(
            base,
            f(&[("app", &[("10.0.0.1:80", "app0"), ("10.0.0.2:80", "app1")])])
        );
        for other in [
            f(&[("app", &[("10.0.0.2:80", "app1"), ("10.0.0.1:80", "app0")])]),
            f(&[("app", &[("10.0.0.1:80", "app0")])]),
            f(&[("api", &[("10.0.0.1:80", "app0"), ("10.0.0.2:80", "app1")])]),
            f(&[("app", &[("10.0.0.1:80", "app9"), ("10.0.0.2:80", "app1")])]),
            f(&[("app", &[("10.0.0.1:8", "0app0"), ("10.0.0.2:80", "app1")])]),
        ] {
            assert_ne!(base, other);
        }
        // Pinned: replicas built apart must agree.
        assert_eq!(f(&[]), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn a_report_reads_back_as_written() {
        let mut r = Report {
            seen: 42,
            ..Report::default()
        };
        let mut up = UpstreamLoad {
            held: 3,
            rps: 12.5,
            ..UpstreamLoad::default()
        };
        up.servers.insert(
            7,
            ServerLoad {
                in_flight: 2,
                idle_ms: 0,
                draining: true,
            },
        );
        r.upstreams.insert("app".into(), up);
        assert_eq!(Report::from_json(&r.to_json()).unwrap(), r);
    }

    #[test]
    fn an_empty_report_is_small_and_unknown_fields_are_ignored() {
        assert_eq!(Report::default().to_json(), br#"{"seen":0,"servers":0}"#);
        let r = Report::from_json(br#"{"seen":1,"newer":true,"upstreams":{"a":{}}}"#).unwrap();
        assert_eq!(r.upstreams["a"], UpstreamLoad::default());
    }
}
