//! In-memory allocate + release throughput of the core allocator (no store).
//!
//! Steady churn: a subdivision holds `LIVE` leases; each iteration allocates a new VM and releases
//! the oldest, and the clock advances 1 ms per operation so released addresses cool down (30 s)
//! and come back, as in production. One iteration = 2 operations.
//!
//!     cargo bench --bench allocator

use std::collections::VecDeque;
use std::hint::black_box;

use cidrcast_core::model::{PoolSpec, SubdivisionSpec};
use cidrcast_core::{Ipam, Settings};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const LIVE: usize = 10_000;
const IDS: usize = 1 << 20;

fn setup(prefix: &str, shard: u8, cooldown_s: f64) -> (Ipam, Vec<String>) {
    let mut ipam = Ipam::new(Settings { cooldown_s });
    ipam.set_journaling(false);
    ipam.add_pool(PoolSpec::new("p", prefix.parse().unwrap(), shard))
        .unwrap();
    ipam.add_subdivision(SubdivisionSpec {
        home_shards: Some(256),
        ..SubdivisionSpec::new("rack")
    })
    .unwrap();
    let ids = (0..IDS).map(|i| format!("vm-{i:08}")).collect();
    (ipam, ids)
}

fn churn(c: &mut Criterion, name: &str, prefix: &str, shard: u8, cooldown_s: f64) {
    let (mut ipam, ids) = setup(prefix, shard, cooldown_s);
    let mut live: VecDeque<usize> = VecDeque::with_capacity(LIVE + 1);
    let mut next = 0usize;
    let mut now = 0.0f64;
    for _ in 0..LIVE {
        ipam.allocate("rack", &ids[next], None, None, now).unwrap();
        live.push_back(next);
        next += 1;
    }
    let mut g = c.benchmark_group("inmem");
    g.throughput(Throughput::Elements(2));
    g.bench_function(name, |b| {
        b.iter(|| {
            now += 0.001;
            let id = next % IDS;
            next += 1;
            black_box(ipam.allocate("rack", &ids[id], None, None, now).unwrap());
            live.push_back(id);
            let old = live.pop_front().unwrap();
            black_box(ipam.release(&ids[old], now).unwrap());
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    churn(
        c,
        "allocate_release_v4_26_cooldown30",
        "10.0.0.0/8",
        26,
        30.0,
    );
    churn(c, "allocate_release_v4_26_cooldown0", "10.0.0.0/8", 26, 0.0);
    churn(
        c,
        "allocate_release_v6_64_cooldown30",
        "2001:db8::/32",
        64,
        30.0,
    );
    churn(
        c,
        "allocate_release_v6_112_cooldown30",
        "fd00::/48",
        112,
        30.0,
    );
}

criterion_group! {
    name = allocator;
    config = Criterion::default().sample_size(30);
    targets = benches
}
criterion_main!(allocator);
