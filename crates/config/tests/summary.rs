//! The summary printed by `rouse check`.

mod common;

use common::ok;
use rouse_config::summary;

#[test]
fn summary_lists_everything_aligned() {
    let config = ok(r#"
[proxy]
listen = ["127.0.0.1:8080", "127.0.0.1:8081"]
threads = 4

[admin]
listen = "127.0.0.1:9900"
token = "t"

[supervisors.remote]
url = "http://10.0.0.2:9001/RPC2"
username = "u"
password = "p"

[supervisors.local]
url = "unix:///run/supervisor.sock"
poll_interval = "500ms"

[[upstream]]
name = "api"
hosts = ["api.example.com", "API2.example.com"]
supervisor = "remote"
min_servers = 1
[[upstream.server]]
address = "10.0.0.2:9101"
[[upstream.server]]
address = "10.0.0.2:9102"
weight = 3
program = "apis:api-big"

[[upstream]]
name = "web"
path_prefix = "/app/"
idle_timeout = "5m"
start_timeout = "1m30s"
[[upstream.server]]
address = "127.0.0.1:9201"
command = ["python3", "-m", "http.server", "9201"]
"#);
    let expected = r#"listen       127.0.0.1:8080, 127.0.0.1:8081 (4 worker threads)
limits       10000 connections, head 32KiB / 100 headers within 1m
admin        127.0.0.1:9900 (token required)
log          text, access log on
supervisors  local   unix:///run/supervisor.sock  no auth  poll 500ms  timeout 10s
             remote  http://10.0.0.2:9001/RPC2    user u   poll 1s     timeout 10s

upstream "api"
  hosts          api.example.com, api2.example.com
  path_prefix    /
  supervisor     supervisord "remote"
  balance        fair
  servers        min 1, max 2
  ready          tcp
  idle_timeout   1m
  start_timeout  30s
  bodies         requests up to 100MiB buffered (1MiB in memory); responses buffered (1MiB in memory, 1GiB at most)
  index  address        weight  program
  0      10.0.0.2:9101  1       api0
  1      10.0.0.2:9102  3       apis:api-big

upstream "web"
  hosts          (default)
  path_prefix    /app/
  supervisor     embedded
  balance        fair
  servers        min 0, max 1
  ready          tcp
  idle_timeout   5m
  start_timeout  1m30s
  bodies         requests up to 100MiB buffered (1MiB in memory); responses buffered (1MiB in memory, 1GiB at most)
  index  address         weight  program  command
  0      127.0.0.1:9201  1       web0     python3 -m http.server 9201
"#;
    assert_eq!(summary(&config), expected);
}

#[test]
fn summary_without_admin_or_supervisors() {
    let config = ok(r#"
[[upstream]]
name = "s"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
"#);
    let text = summary(&config);
    assert!(text.contains("admin        off\n"), "{text}");
    assert!(text.contains("supervisors  none\n"), "{text}");
    assert!(
        text.contains("supervisor     none (static servers)\n"),
        "{text}"
    );
    assert!(
        text.ends_with("0      127.0.0.1:9101  1       s0\n"),
        "{text}"
    );
}

#[test]
fn summary_says_how_names_are_resolved_and_tls_servers_verified() {
    let config = ok(r#"
[[upstream]]
name = "api"
supervisor = "none"
resolve_interval = "10s"
tls_server_name = "api.internal"
[[upstream.server]]
address = "https://api-1.internal:8443"
[[upstream.server]]
address = "unix:/run/api.sock"
"#);
    let text = summary(&config);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("no {key} line in:\n{text}"))
            .to_owned()
    };
    assert!(line("resolve").ends_with("every 10s"), "{text}");
    assert!(
        line("tls").ends_with("verified against the web PKI roots, server name api.internal"),
        "{text}"
    );
    assert!(text.contains("https://api-1.internal:8443"), "{text}");
    assert!(text.contains("unix:/run/api.sock"), "{text}");
}
