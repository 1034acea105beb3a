use super::*;

fn table(upstreams: usize) -> Table {
    let mut text = String::new();
    for u in 0..upstreams {
        text.push_str(&format!(
            "[[upstream]]\nname = \"u{u}\"\nhosts = [\"u{u}.example\"]\nsupervisor = \"none\"\n\
             [[upstream.server]]\naddress = \"127.0.0.1:{}\"\n",
            9000 + u
        ));
    }
    Table::new(&rouse_config::parse("t.toml", &text).expect("valid"))
}

fn wall(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

#[tokio::test(start_paused = true)]
async fn each_sample_is_the_interval_since_the_previous_one() {
    let t = table(2);
    let h = History::new(Duration::from_secs(5), Duration::from_secs(15));
    let app = &t.upstreams[0];
    // Counted before the first sample: not any interval's.
    app.observe_duration(Duration::from_millis(1), &t.metrics);
    h.sample(&t, Instant::now(), wall(1000));
    assert!(
        h.points("u0").is_empty(),
        "the first sample sets the baseline"
    );

    tokio::time::advance(Duration::from_secs(5)).await;
    for _ in 0..50 {
        app.observe_duration(Duration::from_micros(1500), &t.metrics);
    }
    let _busy = app.servers[0].begin_request();
    let _held = app.hold().expect("room");
    h.sample(&t, Instant::now(), wall(1005));

    tokio::time::advance(Duration::from_secs(5)).await;
    h.sample(&t, Instant::now(), wall(1010));

    let p = h.points("u0");
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].at_s, 1005);
    assert!(
        (p[0].rps - 10.0).abs() < 1e-3,
        "50 requests in 5 s: {}",
        p[0].rps
    );
    assert!(p[0].p50_ms > 1.0 && p[0].p50_ms <= 2.0, "{}", p[0].p50_ms);
    assert!(p[0].p99_ms > 1.0 && p[0].p99_ms <= 2.0, "{}", p[0].p99_ms);
    assert_eq!((p[0].in_flight, p[0].held), (1, 1));
    assert_eq!(p[1].rps, 0.0, "nothing in the second interval");
    assert!(p[1].p50_ms.is_nan(), "no latency without requests");
    assert!(h.points("u1").is_empty(), "an idle upstream has no ring");
    assert_eq!(h.tracked(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_ring_keeps_the_window_and_new_series_count_from_zero() {
    let t = table(1);
    let h = History::new(Duration::from_secs(5), Duration::from_secs(15));
    assert_eq!(h.window(), Duration::from_secs(15));
    h.sample(&t, Instant::now(), wall(0));
    // The upstream's first requests come after the first sample: all of them count.
    t.upstreams[0].observe_duration(Duration::from_millis(3), &t.metrics);
    for k in 1..=5u64 {
        tokio::time::advance(Duration::from_secs(5)).await;
        h.sample(&t, Instant::now(), wall(5 * k));
    }
    let p = h.points("u0");
    assert_eq!(p.iter().map(|p| p.at_s).collect::<Vec<_>>(), [15, 20, 25]);
    let all = History::new(Duration::from_secs(5), Duration::from_secs(15));
    all.sample(&t, Instant::now(), wall(0));
    t.upstreams[0].observe_duration(Duration::from_millis(3), &t.metrics);
    tokio::time::advance(Duration::from_secs(5)).await;
    all.sample(&t, Instant::now(), wall(5));
    assert!(
        (all.points("u0")[0].rps - 0.2).abs() < 1e-6,
        "1 request in 5 s"
    );
}

#[tokio::test(start_paused = true)]
async fn an_upstream_that_leaves_the_config_loses_its_ring() {
    let t = table(2);
    let h = History::default();
    h.sample(&t, Instant::now(), wall(0));
    t.upstreams[1].observe_duration(Duration::from_millis(3), &t.metrics);
    tokio::time::advance(SAMPLE_EVERY).await;
    h.sample(&t, Instant::now(), wall(5));
    assert_eq!(h.tracked(), 1);
    h.sample(&table(1), Instant::now(), wall(10));
    assert_eq!(h.tracked(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_sampler_runs_on_its_own() {
    let t = Arc::new(ArcSwap::from_pointee(table(1)));
    let h = Arc::new(History::new(
        Duration::from_secs(2),
        Duration::from_secs(60),
    ));
    let task = tokio::spawn(Arc::clone(&h).run(Arc::clone(&t)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    t.load().upstreams[0].observe_duration(Duration::from_millis(3), &t.load().metrics);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let p = h.points("u0");
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].rps > 0.0);
    task.abort();
}

#[test]
fn a_thousand_idle_upstreams_cost_no_rings() {
    let t = table(1000);
    let h = History::default();
    let now = Instant::now();
    h.sample(&t, now, wall(0));
    h.sample(&t, now + SAMPLE_EVERY, wall(5));
    assert_eq!(h.tracked(), 0);
    // And a busy one costs its ring: 180 points of 20 bytes.
    assert_eq!(
        History::default().capacity * std::mem::size_of::<Point>(),
        3600
    );
}
