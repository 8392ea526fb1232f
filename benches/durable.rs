//! Durable allocations through the engine and the embedded redb store (fsync per commit).
//!
//! `threads` clients allocate concurrently; group commit lets them share each transaction. With
//! one client every allocation is its own commit (the baseline).
//!
//!     cargo bench --bench durable

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cidrcast_core::model::{PoolSpec, SubdivisionSpec};
use cidrcast_core::Settings;
use cidrcast_engine::Engine;
use cidrcast_store::RedbStore;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const PER_ITER: u64 = 2_000;

fn engine(dir: &std::path::Path) -> Engine<RedbStore> {
    let engine = Engine::open(RedbStore::open(dir).unwrap(), Settings::default()).unwrap();
    engine
        .ensure_config(
            &[PoolSpec::new("v4", "10.0.0.0/8".parse().unwrap(), 26)],
            &[SubdivisionSpec {
                home_shards: Some(64),
                ..SubdivisionSpec::new("rack")
            }],
        )
        .unwrap();
    engine
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable");
    g.throughput(Throughput::Elements(PER_ITER));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    for threads in [1usize, 8, 64, 256] {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(engine(dir.path()));
        let counter = Arc::new(AtomicU64::new(0));
        g.bench_with_input(
            BenchmarkId::new("allocate", format!("{threads}_clients")),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let workers: Vec<_> = (0..threads)
                            .map(|_| {
                                let engine = engine.clone();
                                let counter = counter.clone();
                                std::thread::spawn(move || {
                                    for _ in 0..PER_ITER / threads as u64 {
                                        let i = counter.fetch_add(1, Ordering::Relaxed);
                                        let vm = format!("vm-{i}");
                                        engine
                                            .execute(|ipam, now| {
                                                ipam.allocate("rack", &vm, None, None, now)
                                            })
                                            .unwrap();
                                    }
                                })
                            })
                            .collect();
                        for w in workers {
                            w.join().unwrap();
                        }
                        total += start.elapsed();
                    }
                    total
                })
            },
        );
    }
    g.finish();
}

criterion_group!(durable, benches);
criterion_main!(durable);
