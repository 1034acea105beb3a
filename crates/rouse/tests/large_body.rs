//! A 1 GiB upload and download stream through a real `rouse` process with flat memory: its
//! own peak resident memory (VmHWM of /proc/PID/status), not that of the client. (Run in the
//! test's process, rouse shared its memory figures with the client and with the test's
//! runtime, whose threads move tasks around: the same download measured 60–69 MiB of growth
//! there, 5 MiB in rouse's own process.)

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Killed, ROUSE, WAIT, free_addrs};
use futures_util::StreamExt;
use rouse_e2e::BackendProcess;
use tokio::net::TcpStream;
use tokio::time::timeout;

const GIB: u64 = 1 << 30;
/// rouse may buffer a little per connection; a body held in memory would be 1024 MiB.
const MAX_GROWTH_KIB: u64 = 64 * 1024;

/// Peak resident memory of process `pid` so far, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_each_way_with_flat_memory() {
    let backend = BackendProcess::spawn("big", None).await;
    let dir = tempfile::tempdir().unwrap();
    let [addr] = free_addrs::<1>();
    // Past the default max_request_body (100 MiB); buffered (the default), the upload goes
    // through a temp file, which must not cost memory either.
    let config = format!(
        "[proxy]\nlisten = [\"{addr}\"]\n[log]\naccess_log = false\n\
         [[upstream]]\nname = \"app\"\nsupervisor = \"none\"\nmax_request_body = \"2GiB\"\n\
         [[upstream.server]]\naddress = \"{}\"\n",
        backend.addr()
    );
    let path = dir.path().join("rouse.toml");
    std::fs::write(&path, config).unwrap();
    let rouse = Killed(
        Command::new(ROUSE)
            .arg("run")
            .arg("-c")
            .arg(&path)
            .env("TMPDIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    rouse_e2e::wait_until("rouse to listen", WAIT, || async move {
        TcpStream::connect(addr).await.is_ok()
    })
    .await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let url = |path: &str| format!("http://{addr}{path}");
    // Warm up so allocator and connection setup are not counted as growth.
    let r = client.get(url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let before = peak_rss_kib(rouse.0.id());

    let body = reqwest::Body::wrap_stream(rouse_e2e::pattern::stream(GIB, 256 << 10));
    let r = client.post(url("/count")).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["bytes"], GIB, "every byte arrived");
    assert_eq!(
        v["checksum"],
        rouse_e2e::pattern::checksum(GIB),
        "in order, intact"
    );
    let uploaded = peak_rss_kib(rouse.0.id()).saturating_sub(before);

    let r = client
        .get(url(&format!("/bytes/{GIB}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut sum = rouse_e2e::pattern::Checksum::new();
    while let Some(chunk) = timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("download keeps flowing")
    {
        sum.update(&chunk.unwrap());
    }
    assert_eq!(sum.len(), GIB);
    assert_eq!(sum.finish(), rouse_e2e::pattern::checksum(GIB));

    let growth = peak_rss_kib(rouse.0.id()).saturating_sub(before);
    assert!(
        growth < MAX_GROWTH_KIB,
        "rouse's peak memory grew by {growth} KiB while streaming 2 GiB ({uploaded} KiB by the \
         upload)"
    );
    eprintln!("rouse's peak memory grew by {growth} KiB ({uploaded} KiB by the upload)");
}
