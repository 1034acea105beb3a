//! A 1 GiB upload and download stream through rouse with flat memory. Alone in its own test
//! binary so that the process's peak memory reflects rouse, not other tests running beside it.

mod common;

use std::time::Duration;

use common::{start_rouse, static_upstream, url};
use futures_util::StreamExt;
use rouse_e2e::BackendProcess;
use tokio::time::timeout;

const GIB: u64 = 1 << 30;
/// Rouse may buffer a little per connection; a body held in memory would be 1024 MiB.
const MAX_GROWTH_KIB: u64 = 64 * 1024;

/// Peak resident memory of this process so far (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_each_way_with_flat_memory() {
    // The backend is a separate process, so only rouse and the client live in this one.
    let backend = BackendProcess::spawn("big", None).await;
    // Past the default max_request_body (100 MiB); buffered (the default), the upload goes
    // through a temp file, which must not cost memory either.
    let rouse = start_rouse(&static_upstream(
        "app",
        &[],
        "max_request_body = \"2GiB\"",
        &[backend.addr()],
    ))
    .await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    // Warm up so allocator and connection setup are not counted as growth.
    assert_eq!(
        client
            .get(url(rouse.addr(), "/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let before = peak_rss_kib();

    let body = reqwest::Body::wrap_stream(rouse_e2e::pattern::stream(GIB, 256 << 10));
    let r = client
        .post(url(rouse.addr(), "/count"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["bytes"], GIB, "every byte arrived");
    assert_eq!(
        v["checksum"],
        rouse_e2e::pattern::checksum(GIB),
        "in order, intact"
    );

    let r = client
        .get(url(rouse.addr(), &format!("/bytes/{GIB}")))
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

    let growth = peak_rss_kib().saturating_sub(before);
    assert!(
        growth < MAX_GROWTH_KIB,
        "peak memory grew by {growth} KiB while streaming 2 GiB"
    );
}
