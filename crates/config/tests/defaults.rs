//! What a minimal file means: every default of the format.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::ok;
use rouse_config::{
    Balance, CommandLine, LogFormat, Readiness, SupervisorRef, SupervisordUrl, parse,
};

const S: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn minimal_embedded_config() {
    let config = ok(r#"
[[upstream]]
name = "app"
[[upstream.server]]
address = "127.0.0.1:9101"
command = "python3 app.py"
"#);
    assert_eq!(config.source, None);

    let proxy = &config.proxy;
    assert_eq!(proxy.listen, ["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(proxy.threads, 0);
    assert_eq!(proxy.connect_timeout, S(5));
    assert_eq!(proxy.read_timeout, S(60));
    assert_eq!(proxy.client_idle_timeout, S(75));
    assert_eq!(proxy.client_body_timeout, S(60));
    assert_eq!(proxy.send_timeout, S(60));
    assert_eq!(proxy.pool_idle_timeout, S(50));
    assert_eq!(proxy.pool_max_idle_per_server, 128);
    assert_eq!(proxy.shutdown_timeout, S(30));
    assert_eq!(proxy.listen_backlog, 511);
    assert_eq!(proxy.max_connections, 10_000);
    assert_eq!(proxy.client_header_timeout, S(60));
    assert_eq!(proxy.max_header_size, 32 * 1024);
    assert_eq!(proxy.max_headers, 100);
    assert!(!proxy.underscores_in_headers, "nginx's default: dropped");
    assert_eq!(proxy.http2_max_concurrent_streams, 512);
    assert_eq!(proxy.http2_body_preread_size, 1 << 20);
    assert_eq!(proxy.upgrade_idle_timeout, None);
    assert_eq!(proxy.temp_dir, std::env::temp_dir());

    assert_eq!(config.admin, None);
    assert_eq!(config.log.format, LogFormat::Text);
    assert!(config.log.access_log);
    assert!(config.supervisors.is_empty());

    let [upstream] = config.upstreams.as_slice() else {
        panic!("one upstream expected");
    };
    assert_eq!(upstream.name, "app");
    assert!(upstream.hosts.is_empty());
    assert_eq!(upstream.path_prefix, "/");
    assert_eq!(upstream.supervisor, SupervisorRef::Embedded);
    assert_eq!(upstream.supervisord_name, "app");
    assert_eq!(upstream.balance, Balance::Fair);
    assert_eq!(upstream.min_servers, 0);
    assert_eq!(upstream.max_servers, 1);
    assert_eq!(upstream.target_in_flight, 10);
    assert_eq!(upstream.target_rps, None);
    assert_eq!(upstream.idle_timeout, S(60));
    assert_eq!(upstream.start_timeout, S(30));
    assert_eq!(upstream.queue_limit, 1000);
    assert_eq!(upstream.ready, Readiness::Tcp);
    assert!(upstream.never_wake.is_empty());
    assert_eq!(upstream.max_request_body, 100 << 20);
    assert!(upstream.request_buffering);
    assert_eq!(upstream.request_buffer_size, 1 << 20);
    assert!(upstream.response_buffering);
    assert_eq!(upstream.response_buffer_size, 1 << 20);
    assert_eq!(upstream.max_response_buffer, 1 << 30);
    assert!(!upstream.waiting_page);
    assert_eq!(upstream.slow_start, S(5));
    assert_eq!(upstream.fail_timeout, S(2));
    assert_eq!(upstream.fail_timeout_max, S(60));

    let [server] = upstream.servers.as_slice() else {
        panic!("one server expected");
    };
    assert_eq!(server.index, 0);
    assert_eq!(server.address, "127.0.0.1:9101".parse().unwrap());
    assert_eq!(server.weight, 1);
    assert_eq!(server.max_conns, 0, "no limit");
    assert_eq!(server.program, "app0");
    assert_eq!(
        server.command,
        Some(CommandLine::Shell("python3 app.py".into()))
    );
    assert!(server.env.is_empty());
    assert_eq!(server.cwd, None);
    assert_eq!(server.startsecs, S(1));
    assert_eq!(server.stop_signal, "TERM");
    assert_eq!(server.stop_timeout, S(10));
}

#[test]
fn empty_admin_table_uses_the_default_address() {
    let config = ok(r#"
[admin]
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
"#);
    let admin = config.admin.unwrap();
    assert_eq!(admin.listen, "127.0.0.1:9900".parse().unwrap());
    assert_eq!(admin.token, None);
}

#[test]
fn supervisord_defaults_and_program_names() {
    let config = ok(r#"
[supervisors.main]
url = "http://127.0.0.1:9001"

[[upstream]]
name = "app"
supervisor = "main"
supervisord_name = "web"
[[upstream.server]]
address = "127.0.0.1:9101"
[[upstream.server]]
address = "127.0.0.1:9102"
[[upstream.server]]
address = "127.0.0.1:9103"
program = "grp:special"
"#);
    let main = &config.supervisors["main"];
    assert_eq!(main.name, "main");
    assert_eq!(
        main.url,
        SupervisordUrl::Http {
            host: "127.0.0.1".into(),
            port: 9001,
            path: "/RPC2".into()
        }
    );
    assert_eq!(
        (main.username.as_deref(), main.password.as_deref()),
        (None, None)
    );
    assert_eq!(main.poll_interval, S(1));
    assert_eq!(main.timeout, S(10));

    let upstream = &config.upstreams[0];
    assert_eq!(
        upstream.supervisor,
        SupervisorRef::Supervisord("main".into())
    );
    assert_eq!(upstream.max_servers, 3);
    let programs: Vec<&str> = upstream
        .servers
        .iter()
        .map(|s| s.program.as_str())
        .collect();
    assert_eq!(programs, ["web0", "web1", "grp:special"]);
    assert!(upstream.servers.iter().all(|s| s.command.is_none()));
}

#[test]
fn static_servers_get_display_program_names_and_no_command() {
    let config = ok(r#"
[[upstream]]
name = "st"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
[[upstream.server]]
address = "127.0.0.1:9102"
"#);
    let upstream = &config.upstreams[0];
    assert_eq!(upstream.supervisor, SupervisorRef::Static);
    assert_eq!(upstream.servers[1].program, "st1");
    assert_eq!(upstream.servers[1].index, 1);
    assert!(upstream.servers.iter().all(|s| s.command.is_none()));
}

#[test]
fn values_are_normalized() {
    let config = ok(r#"
[log]
format = "json"
access_log = false

[[upstream]]
name = "a"
hosts = ["App.Example.com:8443", "[::1]:80"]
path_prefix = "/api/"
balance = "round_robin"
target_rps = 100
ready = "http:/healthz"
never_wake = ["/healthz", "/metrics"]
slow_start = "0s"
[[upstream.server]]
address = "localhost:9101"
command = ["python3", "app.py"]
env = { B = "2", A = "1" }
cwd = "/srv/app"
stop_signal = "sigint"
startsecs = "0s"
stop_timeout = "1m30s"
"#);
    assert_eq!(config.log.format, LogFormat::Json);
    assert!(!config.log.access_log);
    let upstream = &config.upstreams[0];
    assert_eq!(upstream.hosts, ["app.example.com", "[::1]"]);
    assert_eq!(upstream.path_prefix, "/api/");
    assert_eq!(upstream.balance, Balance::RoundRobin);
    assert_eq!(upstream.target_rps, Some(100.0));
    assert_eq!(
        upstream.ready,
        Readiness::Http {
            path: "/healthz".into()
        }
    );
    assert_eq!(upstream.never_wake, ["/healthz", "/metrics"]);
    assert_eq!(upstream.slow_start, Duration::ZERO);
    let server = &upstream.servers[0];
    assert_eq!(server.address, "localhost:9101".parse().unwrap());
    assert_eq!(
        server.command,
        Some(CommandLine::Argv(
            vec!["python3".into(), "app.py".into()].into()
        ))
    );
    assert_eq!(
        server.env,
        BTreeMap::from([("A".into(), "1".into()), ("B".into(), "2".into())])
    );
    assert_eq!(
        server.cwd.as_deref(),
        Some(std::path::Path::new("/srv/app"))
    );
    assert_eq!(server.stop_signal, "INT");
    assert_eq!(server.startsecs, Duration::ZERO);
    assert_eq!(server.stop_timeout, S(90));
}

#[test]
fn inline_tables_work_like_sections() {
    let config = parse(
        "inline.toml",
        r#"
proxy = { listen = ["127.0.0.1:8000"], threads = 2 }
upstream = [
  { name = "a", supervisor = "none", server = [{ address = "127.0.0.1:9101" }] },
]
"#,
    )
    .unwrap();
    assert_eq!(config.proxy.threads, 2);
    assert_eq!(config.upstreams[0].servers.len(), 1);
}

#[test]
fn protocol_defaults_to_http1_and_h2c_is_read() {
    let base = "[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\n{}\n\
                [[upstream.server]]\naddress = \"127.0.0.1:9101\"\n";
    let config = ok(&base.replace("{}", ""));
    assert_eq!(config.upstreams[0].protocol, rouse_config::Protocol::Http1);
    let config = ok(&base.replace("{}", "protocol = \"h2c\""));
    assert_eq!(config.upstreams[0].protocol, rouse_config::Protocol::H2c);
    let summary = rouse_config::summary(&config);
    assert!(
        summary.contains("protocol") && summary.contains("h2c"),
        "{summary}"
    );
}
