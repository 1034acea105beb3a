//! The balancer runs on every request attempt: how long one pick takes.
//!
//! `cargo bench -p rouse-core --bench balance`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rouse_core::balance::{Balancer, Candidate, Kind};

fn servers(n: usize) -> Vec<Candidate> {
    (0..n)
        .map(|i| Candidate {
            eligible: i % 7 != 3,
            // Busy servers, so the fair pick scans them all (its worst case).
            in_flight: 1 + (i as u32 * 37) % 11,
            weight: 1 + (i as u32 % 3),
            // Room everywhere, so the cap check is paid without changing the pick.
            cap: Some(64),
        })
        .collect()
}

fn pick(c: &mut Criterion) {
    let mut g = c.benchmark_group("pick");
    for n in [2usize, 8, 32, 128] {
        let set = servers(n);
        for kind in [Kind::Fair, Kind::RoundRobin] {
            let b = Balancer::new(kind);
            g.bench_with_input(
                BenchmarkId::new(format!("{kind:?}"), n),
                &set,
                |bench, set| bench.iter(|| b.pick(black_box(set.as_slice()), black_box(&[]))),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, pick);
criterion_main!(benches);
