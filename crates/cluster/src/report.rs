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

impl Report {
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
        assert_eq!(Report::default().to_json(), br#"{"seen":0}"#);
        let r = Report::from_json(br#"{"seen":1,"newer":true,"upstreams":{"a":{}}}"#).unwrap();
        assert_eq!(r.upstreams["a"], UpstreamLoad::default());
    }
}
