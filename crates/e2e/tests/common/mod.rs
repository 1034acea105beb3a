//! Shared by the end-to-end tests: a rouse running in-process on 127.0.0.1:0, built from TOML
//! through the real config pipeline.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use rouse::Rouse;

/// Every network wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

/// Parses `toml` (a whole config; `[proxy] listen` is forced to port 0) and starts rouse.
pub async fn start_rouse(toml: &str) -> Rouse {
    let text = format!(
        "[proxy]\nlisten = [\"127.0.0.1:0\"]\nconnect_timeout = \"1s\"\nread_timeout = \"5s\"\n{toml}"
    );
    let config = rouse_config::parse("test.toml", &text)
        .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n---\n{text}"));
    Rouse::start(config).await.expect("rouse starts")
}

/// A static upstream section over `servers`.
pub fn static_upstream(name: &str, hosts: &[&str], extra: &str, servers: &[SocketAddr]) -> String {
    let hosts = hosts
        .iter()
        .map(|h| format!("{h:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut s = format!(
        "[[upstream]]\nname = {name:?}\nhosts = [{hosts}]\nsupervisor = \"none\"\n{extra}\n"
    );
    for a in servers {
        s.push_str(&format!("[[upstream.server]]\naddress = \"{a}\"\n"));
    }
    s
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT)
        .no_proxy()
        .build()
        .expect("client")
}

pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}
