//! One test per kind of configuration error: each checks the exact `LINE:COL` and that the
//! message names the key or value at fault.

mod common;

use common::{UPSTREAM, check, errors, ok, single, text};
use rouse_config::{ConfigErrors, SupervisorRef, load, parse};

// ---------------------------------------------------------------------------------------------
// Syntax and shape

#[test]
fn toml_syntax_error_is_reported_alone() {
    single(
        r#"
[proxy]
listen = ["127.0.0.1:8080"
threads = 2
"#,
        3,
        1,
        &["TOML syntax error"],
    );
}

#[test]
fn duplicate_toml_key_is_a_syntax_error() {
    single(
        r#"
[proxy]
threads = 1
threads = 2
"#,
        3,
        1,
        &["duplicate key"],
    );
}

#[test]
fn empty_file_needs_an_upstream() {
    let errors = errors("");
    assert_eq!(errors.len(), 1);
    check(&errors[0], 1, 1, &["[[upstream]]"]);
}

#[test]
fn empty_upstream_array_needs_an_upstream() {
    single("upstream = []\n", 1, 1, &["no upstream"]);
}

#[test]
fn unknown_top_level_key() {
    single(
        r#"
[proxi]
threads = 1

[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
"#,
        1,
        2,
        &[
            "\"proxi\"",
            "did you mean \"proxy\"",
            "proxy, admin, log, supervisors, upstream",
        ],
    );
}

#[test]
fn upstream_written_as_a_single_table() {
    single(
        r#"
[upstream]
name = "a"
"#,
        1,
        1,
        &["[[upstream]]", "not [upstream]"],
    );
}

#[test]
fn server_written_as_a_single_table() {
    single(
        r#"
[[upstream]]
name = "a"
supervisor = "none"
[upstream.server]
address = "127.0.0.1:9101"
"#,
        4,
        1,
        &["[[upstream.server]]"],
    );
}

#[test]
fn section_that_is_not_a_table() {
    single(
        r#"
proxy = "127.0.0.1:8080"
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
"#,
        1,
        9,
        &["[proxy] must be a table"],
    );
}

// ---------------------------------------------------------------------------------------------
// [proxy]

/// A section under test followed by a valid upstream, so only the section's errors show.
fn with_upstream(section: &str) -> String {
    format!("{}{UPSTREAM}", text(section))
}

#[test]
fn unknown_key_in_proxy_lists_the_valid_ones() {
    let config = with_upstream(
        r#"
[proxy]
listen = ["127.0.0.1:8080"]
worker_threads = 4
"#,
    );
    single(
        &config,
        3,
        1,
        &[
            "\"worker_threads\"",
            "[proxy]",
            "valid keys: listen, threads, connect_timeout",
        ],
    );
}

#[test]
fn listen_needs_one_address() {
    let config = with_upstream("[proxy]\nlisten = []\n");
    single(&config, 2, 10, &["listen", "at least one"]);
}

#[test]
fn listen_address_must_be_ip_and_port() {
    let config = with_upstream("[proxy]\nlisten = [\"127.0.0.1:8080\", \"example.com:80\"]\n");
    single(
        &config,
        2,
        29,
        &["listen", "\"example.com:80\"", "not an IP address"],
    );
}

#[test]
fn listen_must_be_an_array() {
    let config = with_upstream("[proxy]\nlisten = \"127.0.0.1:8080\"\n");
    single(&config, 2, 10, &["listen", "expected an array"]);
}

#[test]
fn listen_address_twice() {
    let config = with_upstream("[proxy]\nlisten = [\"127.0.0.1:8080\", \"127.0.0.1:8080\"]\n");
    single(&config, 2, 29, &["listen", "127.0.0.1:8080", "twice"]);
}

#[test]
fn threads_must_be_a_non_negative_integer() {
    let config = with_upstream("[proxy]\nthreads = -1\n");
    single(&config, 2, 11, &["threads", "-1", "non-negative integer"]);
    let config = with_upstream("[proxy]\nthreads = \"4\"\n");
    single(&config, 2, 11, &["threads", "\"4\""]);
}

#[test]
fn bad_duration_names_the_value() {
    let config = with_upstream("[proxy]\nconnect_timeout = \"5 parsecs\"\n");
    single(
        &config,
        2,
        19,
        &["connect_timeout", "\"5 parsecs\"", "\"30s\""],
    );
}

#[test]
fn duration_must_be_a_string() {
    let config = with_upstream("[proxy]\nread_timeout = 60\n");
    single(
        &config,
        2,
        16,
        &["read_timeout", "integer `60`", "duration string"],
    );
}

#[test]
fn timeout_must_not_be_zero() {
    let config = with_upstream("[proxy]\nconnect_timeout = \"0s\"\n");
    single(&config, 2, 19, &["connect_timeout", "more than 0s"]);
}

/// A value far past any sensible setting is a typo, and would overflow the deadlines built
/// from it: every duration is bounded, wherever it is written.
#[test]
fn huge_durations_are_refused_where_written() {
    let huge = "\"400000000000y\"";
    for key in [
        "connect_timeout",
        "read_timeout",
        "client_idle_timeout",
        "client_body_timeout",
        "send_timeout",
        "pool_idle_timeout",
        "shutdown_timeout",
        "client_header_timeout",
        "upgrade_idle_timeout",
    ] {
        let config = with_upstream(&format!("[proxy]\n{key} = {huge}\n"));
        single(&config, 2, key.len() + 4, &[key, "too long", "at most"]);
    }
    for key in [
        "idle_timeout",
        "start_timeout",
        "slow_start",
        "fail_timeout",
        "fail_timeout_max",
    ] {
        let config = format!(
            "[[upstream]]\nname = \"a\"\n{key} = {huge}\n[[upstream.server]]\n\
             address = \"127.0.0.1:9101\"\ncommand = \"x\"\n"
        );
        single(&config, 3, key.len() + 4, &[key, "too long"]);
    }
    for key in ["startsecs", "stop_timeout"] {
        let config = format!(
            "[[upstream]]\nname = \"a\"\n[[upstream.server]]\n\
             address = \"127.0.0.1:9101\"\ncommand = \"x\"\n{key} = {huge}\n"
        );
        single(&config, 6, key.len() + 4, &[key, "too long"]);
    }
    let config =
        format!("[supervisors.s]\nurl = \"unix:///s.sock\"\npoll_interval = {huge}\n{UPSTREAM}");
    single(&config, 3, 17, &["poll_interval", "too long"]);
}

#[test]
fn sizes_and_counts_are_bounded() {
    let config = with_upstream("[proxy]\nmax_header_size = \"4GiB\"\n");
    single(&config, 2, 19, &["max_header_size", "4GiB", "1KiB to 1MiB"]);
    let config = with_upstream("[proxy]\nmax_header_size = \"32 parsecs\"\n");
    single(
        &config,
        2,
        19,
        &["max_header_size", "\"32 parsecs\"", "unknown unit"],
    );
    let config = with_upstream("[proxy]\nlisten_backlog = 0\n");
    single(&config, 2, 18, &["listen_backlog", "1 to 65535"]);
    let config = with_upstream("[proxy]\nmax_connections = -5\n");
    single(&config, 2, 19, &["max_connections", "non-negative"]);
    let config = with_upstream("[proxy]\nmax_headers = 99999999\n");
    single(&config, 2, 15, &["max_headers", "1 to 10000"]);
    let config = with_upstream("[proxy]\nhttp2_max_concurrent_streams = 0\n");
    single(
        &config,
        2,
        32,
        &["http2_max_concurrent_streams", "1 to 10000"],
    );
    let config = with_upstream("[proxy]\nhttp2_body_preread_size = \"16k\"\n");
    single(
        &config,
        2,
        27,
        &["http2_body_preread_size", "16KiB", "64KiB to 1GiB"],
    );
    let config = "[[upstream]]\nname = \"a\"\nmax_request_body = \"2TiB\"\n\
                  [[upstream.server]]\naddress = \"127.0.0.1:9101\"\ncommand = \"x\"\n";
    single(config, 3, 20, &["max_request_body", "2TiB", "0B to 1TiB"]);
}

#[test]
fn sizes_read_as_bytes_or_with_units() {
    let config = common::ok(
        "[proxy]\nmax_header_size = 8192\n[[upstream]]\nname = \"a\"\n\
         max_request_body = \"10m\"\nrequest_buffer_size = \"64KiB\"\n\
         [[upstream.server]]\naddress = \"127.0.0.1:9101\"\ncommand = \"x\"\n",
    );
    assert_eq!(config.proxy.max_header_size, 8192);
    assert_eq!(config.upstreams[0].max_request_body, 10 << 20);
    assert_eq!(config.upstreams[0].request_buffer_size, 64 << 10);
}

#[test]
fn admin_hosts_are_host_names() {
    let config = with_upstream("[admin]\nhosts = [\"Rouse.Internal:9900\", \"a b\"]\n");
    single(&config, 2, 33, &["hosts", "whitespace"]);
    let config = common::ok(&with_upstream(
        "[admin]\nhosts = [\"Rouse.Internal:9900\"]\n",
    ));
    assert_eq!(config.admin.unwrap().hosts, ["rouse.internal"]);
}

/// A password written into a url is refused, and the error shows the url without it; so does
/// the `Debug` of a config, which may end up in a log.
#[test]
fn credentials_are_never_printed() {
    let config =
        format!("[supervisors.s]\nurl = \"http://admin:hunter2@127.0.0.1:9001/RPC2\"\n{UPSTREAM}");
    let error = single(
        &config,
        2,
        7,
        &["admin:***@127.0.0.1:9001", "username and password"],
    );
    assert!(!error.to_string().contains("hunter2"), "{error}");

    let config = common::ok(&format!(
        "[admin]\ntoken = \"t0ken\"\n[supervisors.s]\nurl = \"unix:///s.sock\"\n\
         username = \"u\"\npassword = \"hunter2\"\n{UPSTREAM}"
    ));
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("t0ken"),
        "{shown}"
    );
}

/// A string holding a newline or an escape sequence is shown escaped: one error, one line,
/// and no forged output.
#[test]
fn strings_in_errors_are_escaped() {
    let config = with_upstream("[proxy]\nconnect_timeout = \"5s\\nrouse.toml:1:1: all good\"\n");
    let errors = errors(&config);
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(!shown[0].contains('\n'), "{shown:?}");
    assert!(shown[0].contains("5s\\nrouse.toml"), "{shown:?}");
}

// ---------------------------------------------------------------------------------------------
// [admin], [log]

#[test]
fn admin_token_must_not_be_empty() {
    let config = with_upstream("[admin]\ntoken = \"\"\n");
    single(&config, 2, 9, &["token", "empty"]);
}

#[test]
fn admin_listen_must_be_an_address() {
    let config = with_upstream("[admin]\nlisten = \"9900\"\n");
    single(&config, 2, 10, &["listen", "\"9900\""]);
}

#[test]
fn admin_and_proxy_cannot_share_an_address() {
    let config = with_upstream(
        r#"
[proxy]
listen = ["127.0.0.1:9900"]
[admin]
listen = "127.0.0.1:9900"
"#,
    );
    single(
        &config,
        4,
        10,
        &["admin listen", "127.0.0.1:9900", "proxy", "line 2"],
    );
}

#[test]
fn admin_default_address_clashes_too() {
    let config = with_upstream("[proxy]\nlisten = [\"0.0.0.0:9900\"]\n[admin]\n");
    single(
        &config,
        3,
        1,
        &["admin listen 127.0.0.1:9900", "0.0.0.0:9900"],
    );
}

#[test]
fn log_format_is_text_or_json() {
    let config = with_upstream("[log]\nformat = \"xml\"\n");
    single(&config, 2, 10, &["format", "`xml`", "`text`", "`json`"]);
}

#[test]
fn underscores_in_headers_is_a_boolean() {
    let config = with_upstream("[proxy]\nunderscores_in_headers = \"yes\"\n");
    single(&config, 2, 26, &["underscores_in_headers", "boolean"]);
}

#[test]
fn access_log_is_a_boolean() {
    let config = with_upstream("[log]\naccess_log = \"yes\"\n");
    single(&config, 2, 14, &["access_log", "a boolean"]);
}

// ---------------------------------------------------------------------------------------------
// [supervisors.NAME]

#[test]
fn supervisor_needs_a_url() {
    let config = with_upstream("[supervisors.main]\npoll_interval = \"1s\"\n");
    single(&config, 1, 1, &["[supervisors.main]", "needs a url"]);
}

#[test]
fn supervisor_url_needs_a_port() {
    let config = with_upstream("[supervisors.main]\nurl = \"http://127.0.0.1/RPC2\"\n");
    single(&config, 2, 7, &["url", "\"http://127.0.0.1/RPC2\"", "port"]);
}

#[test]
fn supervisor_url_scheme() {
    // https is accepted (supervisord behind TLS); other schemes are not.
    let config = with_upstream("[supervisors.main]\nurl = \"ftp://host:9001\"\n");
    single(
        &config,
        2,
        7,
        &["url", "ftp://host:9001", "https://HOST:PORT"],
    );
    let config = with_upstream("[supervisors.main]\nurl = \"unix://run/supervisor.sock\"\n");
    single(&config, 2, 7, &["url", "absolute"]);
}

#[test]
fn supervisor_username_without_password() {
    let config = with_upstream(
        r#"
[supervisors.main]
url = "http://127.0.0.1:9001"
username = "admin"
"#,
    );
    single(&config, 3, 1, &["username", "password"]);
}

#[test]
fn supervisor_password_without_username() {
    let config = with_upstream(
        r#"
[supervisors.main]
url = "http://127.0.0.1:9001"
password = "secret"
"#,
    );
    single(&config, 3, 1, &["password", "username"]);
}

#[test]
fn supervisor_named_none_is_reserved() {
    let config = with_upstream("[supervisors.none]\nurl = \"unix:///run/supervisor.sock\"\n");
    single(&config, 1, 14, &["\"none\"", "reserved"]);
}

#[test]
fn supervisor_unknown_key() {
    let config = with_upstream(
        "[supervisors.main]\nurl = \"unix:///run/supervisor.sock\"\nserverurl = \"x\"\n",
    );
    single(
        &config,
        3,
        1,
        &["\"serverurl\"", "[supervisors.main]", "url, username"],
    );
}

#[test]
fn supervisors_written_as_one_table() {
    let config = with_upstream("[supervisors]\nurl = \"unix:///run/supervisor.sock\"\n");
    single(&config, 2, 1, &["[supervisors.url]", "[supervisors.NAME]"]);
}

// ---------------------------------------------------------------------------------------------
// [[upstream]]

#[test]
fn upstream_needs_a_name() {
    single(
        r#"
[[upstream]]
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
"#,
        1,
        1,
        &["name"],
    );
}

#[test]
fn upstream_name_characters() {
    single(
        r#"
[[upstream]]
name = "my app"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
"#,
        2,
        8,
        &["\"my app\"", "letters, digits"],
    );
}

#[test]
fn duplicate_upstream_name() {
    single(
        r#"
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"

[[upstream]]
name = "a"
hosts = ["a.example.com"]
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9102"
"#,
        8,
        8,
        &["duplicate upstream name \"a\"", "line 2"],
    );
}

#[test]
fn unknown_key_in_upstream_suggests() {
    single(
        r#"
[[upstream]]
name = "a"
host = ["a.example.com"]
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
"#,
        3,
        1,
        &[
            "\"host\"",
            "[[upstream]]",
            "did you mean \"hosts\"",
            "server",
        ],
    );
}

#[test]
fn hosts_must_not_be_empty_or_blank() {
    let errors = errors(
        r#"
[[upstream]]
name = "a"
hosts = ["", "a b", "ok.example.com"]
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
"#,
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    check(&errors[0], 3, 10, &["hosts", "empty"]);
    check(&errors[1], 3, 14, &["hosts", "\"a b\"", "whitespace"]);
}

#[test]
fn path_prefix_must_start_with_a_slash() {
    single(
        r#"
[[upstream]]
name = "a"
path_prefix = "api"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
"#,
        3,
        15,
        &["path_prefix", "\"api\"", "'/'"],
    );
}

#[test]
fn undefined_supervisor_lists_the_defined_ones() {
    let error = single(
        r#"
[supervisors.b]
url = "unix:///run/b.sock"
[supervisors.a]
url = "http://10.0.0.1:9001"

[[upstream]]
name = "app"
supervisor = "x"
[[upstream.server]]
address = "127.0.0.1:9101"
"#,
        8,
        14,
        &[],
    );
    assert!(
        error
            .message
            .starts_with("supervisor \"x\" is not defined; defined: a, b"),
        "{error}"
    );
}

#[test]
fn balance_is_fair_or_round_robin() {
    single(
        r#"
[[upstream]]
name = "a"
balance = "least_conn"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
"#,
        3,
        11,
        &["balance", "`least_conn`", "`fair`", "`round_robin`"],
    );
}

const TWO_SERVERS: &str = r#"
[[upstream.server]]
address = "127.0.0.1:9101"
[[upstream.server]]
address = "127.0.0.1:9102"
"#;

fn two_servers(upstream: &str) -> String {
    format!("{}{}", text(upstream), text(TWO_SERVERS))
}

#[test]
fn max_servers_cannot_exceed_the_servers() {
    let config =
        two_servers("[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\nmax_servers = 3\n");
    single(
        &config,
        4,
        15,
        &["max_servers (3)", "number of servers (2)"],
    );
}

#[test]
fn max_servers_is_at_least_one() {
    let config =
        two_servers("[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\nmax_servers = 0\n");
    single(&config, 4, 15, &["max_servers", "at least 1"]);
}

#[test]
fn min_servers_cannot_exceed_max_servers() {
    let config = two_servers(
        "[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\nmin_servers = 2\nmax_servers = 1\n",
    );
    single(&config, 4, 15, &["min_servers (2)", "max_servers (1)"]);
}

#[test]
fn min_servers_cannot_exceed_the_servers() {
    let config =
        two_servers("[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\nmin_servers = 5\n");
    single(
        &config,
        4,
        15,
        &["min_servers (5)", "number of servers (2)"],
    );
}

#[test]
fn target_in_flight_is_positive() {
    let config =
        two_servers("[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\ntarget_in_flight = 0\n");
    single(&config, 4, 20, &["target_in_flight", "at least 1"]);
}

#[test]
fn target_rps_is_positive() {
    let config =
        two_servers("[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\ntarget_rps = -2.5\n");
    single(&config, 4, 14, &["target_rps", "-2.5"]);
    let config = two_servers("[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\ntarget_rps = 0\n");
    single(&config, 4, 14, &["target_rps", "more than 0"]);
}

#[test]
fn ready_values() {
    let config =
        two_servers("[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\nready = \"ping\"\n");
    single(&config, 4, 9, &["ready", "\"ping\"", "\"tcp\""]);
    let config = two_servers(
        "[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\nready = \"http:healthz\"\n",
    );
    single(&config, 4, 9, &["ready", "\"http:healthz\"", "'/'"]);
}

#[test]
fn ready_supervisor_needs_a_supervisor() {
    let config =
        two_servers("[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\nready = \"supervisor\"\n");
    single(
        &config,
        4,
        9,
        &["ready = \"supervisor\"", "supervisor = \"none\""],
    );
}

#[test]
fn never_wake_entries_are_paths() {
    let config = two_servers(
        "[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\nnever_wake = [\"/ok\", \"healthz\"]\n",
    );
    single(&config, 4, 22, &["never_wake", "\"healthz\"", "'/'"]);
}

#[test]
fn fail_timeout_max_not_below_fail_timeout() {
    let config = two_servers(
        "[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\nfail_timeout = \"10s\"\nfail_timeout_max = \"5s\"\n",
    );
    single(
        &config,
        5,
        20,
        &["fail_timeout_max (5s)", "fail_timeout (10s)"],
    );
}

#[test]
fn upstream_durations_are_checked() {
    let config = two_servers(
        "[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\nidle_timeout = \"0s\"\nstart_timeout = \"soon\"\n",
    );
    let errors = errors(&config);
    assert_eq!(errors.len(), 2, "{errors:?}");
    check(&errors[0], 4, 16, &["idle_timeout", "more than 0s"]);
    check(&errors[1], 5, 17, &["start_timeout", "\"soon\""]);
}

#[test]
fn upstream_needs_a_server() {
    single(
        r#"
[[upstream]]
name = "a"
supervisor = "none"
"#,
        1,
        1,
        &["\"a\"", "[[upstream.server]]"],
    );
}

// ---------------------------------------------------------------------------------------------
// [[upstream.server]]

#[test]
fn server_needs_an_address() {
    single(
        r#"
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
weight = 2
"#,
        4,
        1,
        &["address"],
    );
}

#[test]
fn server_address_must_be_ip_and_port() {
    single(
        r#"
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1"
"#,
        5,
        11,
        &["address", "\"127.0.0.1\"", "port"],
    );
}

#[test]
fn server_address_port_zero() {
    single(
        r#"
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:0"
"#,
        5,
        11,
        &["address", "\"127.0.0.1:0\"", "port 0"],
    );
}

#[test]
fn server_localhost_is_accepted() {
    // A name like any other, resolved by rouse (to 127.0.0.1 and/or ::1, as the system says).
    let config = ok(r#"
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "localhost:9101"
"#);
    assert_eq!(
        config.upstreams[0].servers[0].address,
        "localhost:9101".parse().unwrap()
    );
}

#[test]
fn server_weight_range() {
    let base = "[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\n[[upstream.server]]\naddress = \"127.0.0.1:9101\"\n";
    single(
        &format!("{base}weight = 0\n"),
        6,
        10,
        &["weight", "0", "1 to 1000"],
    );
    single(
        &format!("{base}weight = 1001\n"),
        6,
        10,
        &["weight", "1001"],
    );
    single(
        &format!("{base}weight = 1.5\n"),
        6,
        10,
        &["weight", "float"],
    );
}

#[test]
fn server_max_conns_range() {
    let base = "[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\n[[upstream.server]]\naddress = \"127.0.0.1:9101\"\n";
    single(
        &format!("{base}max_conns = -1\n"),
        6,
        13,
        &["max_conns", "-1", "0 = no limit"],
    );
    single(
        &format!("{base}max_conns = 1000001\n"),
        6,
        13,
        &["max_conns", "1000001", "1000000"],
    );
    single(
        &format!("{base}max_conns = \"8\"\n"),
        6,
        13,
        &["max_conns", "string"],
    );
    single(
        &format!("{base}max_conns = 2.5\n"),
        6,
        13,
        &["max_conns", "float"],
    );
}

#[test]
fn server_max_conns_values() {
    let config = ok(r#"
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
max_conns = 8
[[upstream.server]]
address = "127.0.0.1:9102"
max_conns = 0
[[upstream.server]]
address = "127.0.0.1:9103"
max_conns = 1000000
"#);
    let caps: Vec<u32> = config.upstreams[0]
        .servers
        .iter()
        .map(|s| s.max_conns)
        .collect();
    assert_eq!(caps, [8, 0, 1_000_000]);
}

#[test]
fn unknown_key_in_server() {
    single(
        r#"
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
adress = "127.0.0.1:9102"
"#,
        6,
        1,
        &[
            "\"adress\"",
            "[[upstream.server]]",
            "did you mean \"address\"",
        ],
    );
}

#[test]
fn program_only_for_supervisord() {
    single(
        r#"
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
program = "a0"
"#,
        6,
        1,
        &["program", "supervisord", "supervisor = \"none\""],
    );
}

#[test]
fn program_name_format() {
    single(
        r#"
[supervisors.main]
url = "unix:///run/supervisor.sock"
[[upstream]]
name = "a"
supervisor = "main"
[[upstream.server]]
address = "127.0.0.1:9101"
program = "a:b:c"
"#,
        8,
        11,
        &["program", "\"a:b:c\"", "group:name"],
    );
}

#[test]
fn embedded_server_needs_a_command() {
    single(
        r#"
[[upstream]]
name = "a"
[[upstream.server]]
address = "127.0.0.1:9101"
"#,
        3,
        1,
        &["command", "embedded"],
    );
}

#[test]
fn command_not_allowed_for_static_or_supervisord() {
    single(
        r#"
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
command = "python3 app.py"
"#,
        6,
        1,
        &["command", "embedded supervisor", "supervisor = \"none\""],
    );
    single(
        r#"
[supervisors.main]
url = "unix:///run/supervisor.sock"
[[upstream]]
name = "a"
supervisor = "main"
[[upstream.server]]
address = "127.0.0.1:9101"
command = ["python3", "app.py"]
"#,
        8,
        1,
        &["command", "supervisor = \"main\""],
    );
}

#[test]
fn command_must_not_be_empty() {
    let base = "[[upstream]]\nname = \"a\"\n[[upstream.server]]\naddress = \"127.0.0.1:9101\"\n";
    single(
        &format!("{base}command = \"  \"\n"),
        5,
        11,
        &["command", "empty"],
    );
    single(
        &format!("{base}command = []\n"),
        5,
        11,
        &["command", "empty"],
    );
    single(
        &format!("{base}command = [\"\", \"x\"]\n"),
        5,
        11,
        &["command", "empty"],
    );
    single(
        &format!("{base}command = 7\n"),
        5,
        11,
        &["command", "array of strings"],
    );
    single(
        &format!("{base}command = [\"a\", 7]\n"),
        5,
        17,
        &["command", "integer"],
    );
}

#[test]
fn embedded_only_keys_on_a_static_upstream() {
    let errors = errors(
        r#"
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
env = { A = "1" }
cwd = "/tmp"
startsecs = "2s"
stop_signal = "INT"
stop_timeout = "3s"
"#,
    );
    assert_eq!(errors.len(), 5, "{errors:?}");
    for (error, (line, key)) in errors.iter().zip([
        (6, "env"),
        (7, "cwd"),
        (8, "startsecs"),
        (9, "stop_signal"),
        (10, "stop_timeout"),
    ]) {
        check(error, line, 1, &[key, "only for the embedded supervisor"]);
    }
}

#[test]
fn stop_signal_must_be_known() {
    single(
        r#"
[[upstream]]
name = "a"
[[upstream.server]]
address = "127.0.0.1:9101"
command = "app"
stop_signal = "SIGSEGV"
"#,
        6,
        15,
        &["stop_signal", "\"SIGSEGV\"", "TERM"],
    );
}

#[test]
fn env_values_are_strings() {
    single(
        r#"
[[upstream]]
name = "a"
[[upstream.server]]
address = "127.0.0.1:9101"
command = "app"
env = { PORT = 9101 }
"#,
        6,
        16,
        &["env", "integer"],
    );
}

#[test]
fn env_names_are_valid() {
    single(
        r#"
[[upstream]]
name = "a"
[[upstream.server]]
address = "127.0.0.1:9101"
command = "app"
env = { "A=B" = "1" }
"#,
        6,
        7,
        &["env", "\"A=B\""],
    );
}

// ---------------------------------------------------------------------------------------------
// Between sections

#[test]
fn two_default_upstreams_with_the_same_prefix() {
    let error = single(
        r#"
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"

[[upstream]]
name = "b"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9102"
"#,
        8,
        8,
        &[],
    );
    assert_eq!(
        error.message,
        "two default upstreams (no hosts) with path_prefix \"/\": \"a\" (line 2) and \"b\""
    );
}

#[test]
fn two_upstreams_for_one_host_and_prefix() {
    single(
        r#"
[[upstream]]
name = "a"
hosts = ["Example.com"]
path_prefix = "/api"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"

[[upstream]]
name = "b"
hosts = ["www.example.com", "example.com:8080"]
path_prefix = "/api"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9102"
"#,
        11,
        29,
        &[
            "host \"example.com\"",
            "path_prefix \"/api\"",
            "\"a\" (line 2) and \"b\"",
        ],
    );
}

#[test]
fn same_host_with_other_prefixes_is_fine() {
    ok(r#"
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"

[[upstream]]
name = "b"
path_prefix = "/api/"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
"#);
}

#[test]
fn duplicate_server_address_in_one_upstream() {
    single(
        r#"
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
[[upstream.server]]
address = "localhost:9101"
"#,
        7,
        11,
        &["127.0.0.1:9101", "twice", "\"a\"", "line 5"],
    );
}

#[test]
fn embedded_upstreams_cannot_share_an_address() {
    single(
        r#"
[[upstream]]
name = "a"
[[upstream.server]]
address = "127.0.0.1:9101"
command = "app"

[[upstream]]
name = "b"
hosts = ["b.example.com"]
[[upstream.server]]
address = "127.0.0.1:9101"
command = "app"
"#,
        11,
        11,
        &["127.0.0.1:9101", "upstream \"a\"", "line 4", "embedded"],
    );
}

#[test]
fn static_upstreams_may_share_an_address() {
    ok(r#"
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"

[[upstream]]
name = "b"
hosts = ["b.example.com"]
[[upstream.server]]
address = "127.0.0.1:9101"
command = "app"
"#);
}

#[test]
fn server_on_rouse_own_address() {
    single(
        r#"
[proxy]
listen = ["0.0.0.0:8080"]

[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:8080"
"#,
        8,
        11,
        &["127.0.0.1:8080", "proxy listen", "loop"],
    );
}

#[test]
fn two_servers_driving_one_program() {
    single(
        r#"
[supervisors.main]
url = "unix:///run/supervisor.sock"

[[upstream]]
name = "a"
supervisor = "main"
[[upstream.server]]
address = "127.0.0.1:9101"
program = "shared"

[[upstream]]
name = "b"
hosts = ["b.example.com"]
supervisor = "main"
[[upstream.server]]
address = "127.0.0.1:9102"
program = "shared"
"#,
        17,
        11,
        &[
            "program \"shared\"",
            "supervisor \"main\"",
            "upstream \"a\"",
            "line 9",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Everything at once

/// Schema errors do not stop at the first one: each section is checked on its own and every
/// error is reported, in file order.
#[test]
fn errors_in_different_sections_are_all_reported() {
    let errors = errors(
        r#"
[[upstream]]
name = "a"
hots = ["a.example.com"]
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"

[[upstream]]
name = "b"
hosts = ["b.example.com"]
supervisor = "none"
colour = "blue"
[[upstream.server]]
address = "127.0.0.1:9102"

[[upstream]]
name = "c"
hosts = ["c.example.com"]
supervisor = "none"
idle_timeout = "forever"
[[upstream.server]]
address = "127.0.0.1:9103"

[[upstream]]
name = "a"
hosts = ["d.example.com"]
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9104"
"#,
    );
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 4, "{}", shown.join("\n"));
    check(&errors[0], 3, 1, &["\"hots\""]);
    check(&errors[1], 12, 1, &["\"colour\""]);
    check(&errors[2], 20, 16, &["idle_timeout", "\"forever\""]);
    check(&errors[3], 25, 8, &["duplicate upstream name \"a\""]);
}

#[test]
fn several_errors_in_one_table_are_all_reported() {
    let errors = errors(
        r#"
[proxy]
listen = ["nope"]
threads = "many"
connect_timeout = "fast"
pool_max_idle_per_server = -1
[admin]
token = ""
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
weight = 0
"#,
    );
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 6, "{}", shown.join("\n"));
    check(&errors[0], 2, 11, &["listen", "\"nope\""]);
    check(&errors[1], 3, 11, &["threads"]);
    check(&errors[2], 4, 19, &["connect_timeout", "\"fast\""]);
    check(&errors[3], 5, 28, &["pool_max_idle_per_server"]);
    check(&errors[4], 7, 9, &["token"]);
    check(&errors[5], 13, 10, &["weight"]);
}

#[test]
fn display_is_one_line_per_error() {
    let errors = parse("conf/rouse.toml", "[proxy]\nthreads = \"x\"\nbad = 1\n").unwrap_err();
    let shown = errors.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3, "{shown}");
    assert!(
        lines[0].starts_with("conf/rouse.toml:1:1: no upstream"),
        "{shown}"
    );
    assert!(
        lines[1].starts_with("conf/rouse.toml:2:11: threads: "),
        "{shown}"
    );
    assert!(
        lines[2].starts_with("conf/rouse.toml:3:1: unknown key \"bad\""),
        "{shown}"
    );
    assert!(shown.ends_with('\n'));
    let _: &dyn std::error::Error = &errors;
}

// ---------------------------------------------------------------------------------------------
// load()

#[test]
fn load_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.toml");
    let errors: ConfigErrors = load(&path).unwrap_err();
    assert_eq!(errors.len(), 1);
    let shown = errors.to_string();
    assert!(
        shown.starts_with(&format!("{}: cannot read: ", path.display())),
        "{shown}"
    );
}

#[test]
fn load_non_utf8_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.toml");
    std::fs::write(&path, b"[proxy]\n# caf\xe9\n").unwrap();
    let errors = load(&path).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!((errors.errors[0].line, errors.errors[0].column), (2, 6));
    assert!(errors.errors[0].message.contains("UTF-8"));
}

#[test]
fn load_reports_against_the_path_and_sets_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rouse.toml");
    std::fs::write(&path, "[proxy]\nthreads = -1\n").unwrap();
    let errors = load(&path).unwrap_err();
    assert!(
        errors
            .errors
            .iter()
            .all(|e| e.file == path.display().to_string())
    );

    std::fs::write(&path, text(UPSTREAM)).unwrap();
    let config = load(&path).unwrap();
    assert_eq!(config.source.as_deref(), Some(path.as_path()));
}

#[test]
fn a_server_may_name_its_own_supervisord() {
    let config = ok(r#"
[supervisors.a]
url = "http://127.0.0.1:9001"
[supervisors.b]
url = "unix:///run/b.sock"
[[upstream]]
name = "app"
supervisor = "a"
[[upstream.server]]
address = "127.0.0.1:9101"
[[upstream.server]]
address = "127.0.0.1:9102"
supervisor = "b"
"#);
    let servers = &config.upstreams[0].servers;
    assert_eq!(
        servers[0].supervisor,
        SupervisorRef::Supervisord("a".into())
    );
    assert_eq!(
        servers[1].supervisor,
        SupervisorRef::Supervisord("b".into())
    );
    // The default program name does not depend on the host.
    assert_eq!(servers[1].program, "app1");
}

#[test]
fn a_servers_own_supervisor_must_be_defined() {
    single(
        r#"
[supervisors.a]
url = "http://127.0.0.1:9001"
[[upstream]]
name = "app"
supervisor = "a"
[[upstream.server]]
address = "127.0.0.1:9101"
supervisor = "nope"
"#,
        8,
        14,
        &["nope", "not defined", "defined: a"],
    );
}

#[test]
fn a_servers_own_supervisor_needs_a_supervisord_upstream() {
    single(
        r#"
[supervisors.a]
url = "http://127.0.0.1:9001"
[[upstream]]
name = "app"
[[upstream.server]]
address = "127.0.0.1:9101"
command = "x"
supervisor = "a"
"#,
        8,
        1,
        &["supervisor", "only for supervisord upstreams"],
    );
}

#[test]
fn the_same_program_on_two_supervisords_is_fine_but_not_twice_on_one() {
    let text = r#"
[supervisors.a]
url = "http://127.0.0.1:9001"
[supervisors.b]
url = "http://127.0.0.1:9002"
[[upstream]]
name = "x"
supervisor = "a"
[[upstream.server]]
address = "127.0.0.1:9101"
program = "app"
[[upstream.server]]
address = "127.0.0.1:9102"
program = "app"
supervisor = "b"
"#;
    ok(text);
    let clash = text.replace("supervisor = \"b\"", "supervisor = \"a\"");
    single(&clash, 13, 11, &["app", "already driven"]);
}

#[test]
fn protocol_is_http1_h2c_or_h2() {
    single(
        r#"
[[upstream]]
name = "a"
protocol = "http2"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
"#,
        3,
        12,
        &["protocol", "`http2`", "`http1`", "`h2c`", "`h2`"],
    );
}

/// `h2` is HTTP/2 inside TLS: a server reached over plain TCP cannot speak it.
#[test]
fn protocol_h2_needs_tls_server_addresses() {
    single(
        r#"
[[upstream]]
name = "a"
protocol = "h2"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
"#,
        3,
        12,
        &["protocol = \"h2\"", "TLS", "h2c"],
    );
}

#[test]
fn server_addresses_of_every_kind_are_read() {
    let config = ok(r#"
[[upstream]]
name = "a"
supervisor = "none"
resolve_interval = "5s"
tls_server_name = "api.internal"
[[upstream.server]]
address = "unix:/run/app/app.sock"
[[upstream.server]]
address = "App.Internal:8000"
[[upstream.server]]
address = "https://10.0.0.5:8443"
[[upstream.server]]
address = "10.0.0.6:8443"
tls = true
"#);
    let upstream = &config.upstreams[0];
    assert_eq!(upstream.resolve_interval, std::time::Duration::from_secs(5));
    let shown: Vec<(String, bool)> = upstream
        .servers
        .iter()
        .map(|s| (s.address.to_string(), s.tls.is_some()))
        .collect();
    assert_eq!(
        shown,
        [
            ("unix:/run/app/app.sock".to_owned(), false),
            ("app.internal:8000".to_owned(), false),
            ("10.0.0.5:8443".to_owned(), true),
            ("10.0.0.6:8443".to_owned(), true),
        ]
    );
    let tls = upstream.servers[2].tls.as_ref().expect("tls");
    assert_eq!(tls.server_name.as_deref(), Some("api.internal"));
    assert!(tls.verify);
}

#[test]
fn bad_server_addresses_are_placed() {
    let head = "[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\n[[upstream.server]]\n";
    single(
        &format!("{head}address = \"unix:run/app.sock\"\n"),
        5,
        11,
        &["unix:run/app.sock", "must be absolute"],
    );
    single(
        &format!("{head}address = \"bad_-name-.example:80\"\n"),
        5,
        11,
        &["not a host name"],
    );
    single(
        &format!("{head}address = \"https://unix:/run/a.sock\"\n"),
        5,
        11,
        &["unix socket"],
    );
    single(
        &format!("{head}address = \"unix:/run/a.sock\"\ntls = true\n"),
        6,
        1,
        &["tls = true over a unix socket"],
    );
    single(
        &format!("{head}address = \"https://a.example:443\"\ntls = false\n"),
        6,
        1,
        &["contradicts"],
    );
}

#[test]
fn unix_and_name_addresses_may_not_be_listed_twice() {
    for address in ["unix:/run/a.sock", "app.internal:80"] {
        single(
            &format!(
                "[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\n\
                 [[upstream.server]]\naddress = \"{address}\"\n\
                 [[upstream.server]]\naddress = \"{address}\"\n"
            ),
            7,
            11,
            &["twice", "line 5"],
        );
    }
}

#[test]
fn upstream_tls_settings_are_checked() {
    let head = "[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\n";
    let tls_server = "[[upstream.server]]\naddress = \"https://a.example\"\n";
    single(
        &format!("{head}tls_verify = false\n[[upstream.server]]\naddress = \"a.example:80\"\n"),
        4,
        1,
        &["tls_verify", "no server of this upstream uses TLS"],
    );
    single(
        &format!("{head}tls_ca_file = \"/nonexistent/ca.pem\"\n{tls_server}"),
        4,
        15,
        &["tls_ca_file", "/nonexistent/ca.pem"],
    );
    single(
        &format!("{head}tls_server_name = \"bad name\"\n{tls_server}"),
        4,
        19,
        &["tls_server_name"],
    );
    single(
        &format!("{head}resolve_interval = \"10ms\"\n{tls_server}"),
        4,
        20,
        &["resolve_interval", "at least 1s"],
    );
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    single(
        &format!(
            "{head}tls_ca_file = \"{}\"\n{tls_server}",
            not_pem.display()
        ),
        4,
        15,
        &["no PEM certificate"],
    );
}

#[test]
fn supervisor_https_urls_and_their_ca_file() {
    let config = ok(r#"
[supervisors.remote]
url = "https://sup.example.com:9001"
[[upstream]]
name = "a"
supervisor = "remote"
[[upstream.server]]
address = "10.0.0.1:80"
"#);
    let sup = &config.supervisors["remote"];
    assert!(sup.tls.is_some(), "https means TLS");
    assert_eq!(sup.shown_url(), "https://sup.example.com:9001/RPC2");
    let config = with_upstream(
        "[supervisors.main]\nurl = \"http://127.0.0.1:9001\"\nca_file = \"/etc/ca.pem\"\n",
    );
    single(&config, 3, 1, &["ca_file", "only for https://"]);
    let config = with_upstream(
        "[supervisors.main]\nurl = \"https://127.0.0.1:9001\"\nca_file = \"/nonexistent.pem\"\n",
    );
    single(&config, 3, 11, &["ca_file", "/nonexistent.pem"]);
}
